//! The workbench's two languages. Every message is one arm of one `match` holding both
//! texts, so a message without its translation does not compile. The seeds' terms are the
//! ones a bank's staff use: 公海 (the public pool), 保有量 (holding), 首触保护 (first-touch
//! protection), 转介 (referral).

/// A language of the workbench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The `lang` attribute and cookie value.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "zh-CN" | "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The browser's first preference among the two (`Accept-Language`), English when
    /// it names neither.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut fields = part.trim().split(';');
            let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::Zh,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }

    /// The language's own name, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "简体中文",
        }
    }

    pub fn t(self, msg: Msg) -> &'static str {
        text(self, msg)
    }

    /// A closed value of the API (a stage, a value tier, a customer type, a severity)
    /// as the bank's staff say it: Chinese in Chinese, the API's own word in English
    /// (what analysts filter by and exports carry). Unknown values are shown as they are.
    pub fn value(self, code: &str) -> &str {
        if self == Lang::En {
            return code;
        }
        match code {
            "lead" => "线索",
            "contacted" => "已联系",
            "qualified" => "已甄别",
            "customer" => "成交客户",
            "active" => "活跃",
            "dormant" => "沉睡",
            "churned" => "流失",
            "high" => "高",
            "mid" => "中",
            "low" => "低",
            "critical" => "紧急",
            "normal" => "一般",
            "individual" => "个人",
            "enterprise" => "企业",
            other => other,
        }
    }
}

macro_rules! messages {
    ($($msg:ident => $en:literal, $zh:literal;)*) => {
        /// Every text the workbench shows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg { $($msg),* }

        /// `msg` in `lang`.
        pub fn text(lang: Lang, msg: Msg) -> &'static str {
            match (msg, lang) {
                $((Msg::$msg, Lang::En) => $en, (Msg::$msg, Lang::Zh) => $zh,)*
            }
        }

        #[cfg(test)]
        const ALL: &[Msg] = &[$(Msg::$msg),*];
    };
}

messages! {
    Product => "CRM workbench", "客户经营工作台";
    SkipToContent => "Skip to content", "跳到正文";
    MainNav => "Main", "主导航";
    NavOwnership => "Ownership", "客户归属";
    NavBook => "My book", "我的客户";
    NavPool => "Public pool", "公海";
    NavFunnel => "Lifecycle funnel", "生命周期漏斗";
    SignedInAs => "Signed in as", "当前用户";
    SignOut => "Sign out", "退出";
    SignIn => "Sign in", "登录";
    Language => "Language", "语言";
    RoleManager => "manager", "客户经理";
    RoleAnalyst => "analyst", "分析师";
    RoleAuditor => "auditor", "审计";
    RoleAdmin => "administrator", "管理员";
    RoleService => "service", "服务";
    AuthOff => "authentication off (development)", "未启用认证（开发环境）";
    Portfolios => "Portfolios", "客户保有量";
    ByManager => "By manager", "按客户经理";
    ByTeam => "By team", "按团队";
    ByRegion => "By region", "按区域";
    Manager => "Manager", "客户经理";
    Team => "Team", "团队";
    Region => "Region", "区域";
    Branch => "Branch", "网点";
    Customers => "Customers", "客户数";
    HoldingLimit => "Holding limit (保有量上限)", "保有量上限";
    Fill => "Fill", "占用";
    NoLimit => "no limit", "不限";
    PoolTitle => "The public pool (公海)", "公海客户";
    ReturnsToPool => "Returns to the pool", "自动退回公海";
    ReturnsIn => "in", "剩余";
    DaysUnit => "days", "天";
    Overdue => "overdue: the scheduler returns it on its next tick", "已到期：调度器下一轮将其退回公海";
    Locked => "not by rule (locked or not due)", "不会自动退回（已锁定或未到期）";
    CauseNoContact => "no contact by the owner", "客户经理未联系";
    CauseLeadNotWon => "lead not won", "线索未成交";
    ClaimRules => "Pool rules in force", "现行公海规则";
    ClaimCap => "Claims per manager per day", "每位客户经理每日可领取";
    ReclaimCooldown => "Days before a previous owner may claim back", "原客户经理再次领取需等待天数";
    WarningDays => "Owners are warned this many days before a return", "退回前提前预警天数";
    PolicyVersionInForce => "Policy version", "策略版本";
    PoolIntro => "Customers with no owner, waiting to be claimed.", "暂无归属、可被领取的客户。";
    Customer => "Customer", "客户";
    Stage => "Stage", "阶段";
    ValueTier => "Value tier", "价值等级";
    Registered => "Registered", "注册时间";
    LastContact => "Last contact", "最近联系";
    Owner => "Owner", "归属客户经理";
    OwnedSince => "Owned since", "归属起始";
    NextPage => "Next page", "下一页";
    ConfirmTitle => "Open this page?", "确认打开此页面？";
    ConfirmText => "You followed a link from another site to a page that shows customers' personal data. Opening it is recorded as your read of that data.", "您通过其他网站的链接访问了含客户个人信息的页面。打开该页面将被记录为您本人的个人信息查阅。";
    ConfirmGo => "Open the page", "打开页面";
    PreviousPage => "Previous page", "上一页";
    FirstPage => "First page", "第一页";
    Empty => "Nothing here.", "暂无数据。";
    BookTitle => "Book", "客户名单";
    BookOf => "Customers of", "客户经理名下客户：";
    Profile => "Profile", "客户资料";
    CustomerType => "Type", "类型";
    Channel => "First-touch channel", "首触渠道";
    Aum => "Assets under management", "资产规模";
    NextFollowUp => "Next follow-up", "下次跟进";
    InPool => "in the public pool (公海)", "在公海中";
    OwnershipHistory => "Ownership history", "归属历史";
    AsOf => "As of", "截至时间";
    AsOfHelp => "Pick any instant (local time); the owner then is shown with the event, rule and policy version that decided it.", "选择任意时刻（本地时间），显示当时的归属客户经理及决定归属的事件、规则和策略版本。";
    Show => "Show", "查询";
    Now => "Now", "当前";
    OwnerThen => "Owner at that instant", "该时刻的归属";
    NotRegisteredYet => "not registered yet", "尚未注册";
    From => "From", "起";
    To => "To", "止";
    Event => "Event", "事件";
    Reason => "Reason", "原因";
    ActedBy => "By", "操作人";
    Rule => "Rule", "规则";
    PolicyVersion => "Policy version", "策略版本";
    EndedBy => "Ended by", "结束事件";
    Current => "current", "至今";
    Timeline => "Timeline", "客户动态";
    When => "When", "时间";
    Summary => "What happened", "内容";
    OlderEvents => "Older events", "更早的动态";
    FunnelTitle => "Lifecycle funnel", "生命周期漏斗";
    SliceLabel => "Slice", "维度";
    SliceAll => "All customers", "全部客户";
    StagesNow => "Customers by stage", "各阶段客户数";
    Count => "Customers", "客户数";
    Conversion => "Conversion", "转化率";
    NextStep => "Next step", "下一阶段转化";
    ReachedNext => "Reached a further stage", "进入后续阶段";
    TimeInStageTitle => "Time in stage", "阶段停留时长";
    CompletedStays => "Stays ended", "已结束停留次数";
    MedianTime => "Median time", "停留时长中位数";
    MovesTitle => "Moves between stages, last 30 days", "近 30 天阶段流转";
    FromStage => "From stage", "原阶段";
    ToStage => "To stage", "新阶段";
    Moves => "Moves", "流转次数";
    Reactivations => "Of which reactivated (dormant or churned → active)", "其中激活（沉睡或流失 → 活跃）";
    NewlyRegistered => "registered", "新注册";
    Cumulative => "Cumulative", "累计转化";
    ExportCsv => "Export CSV", "导出 CSV";
    Chart => "Chart", "图表";
    Table => "Table", "表格";
    Key => "Group", "分组";
    SignInTitle => "Sign in to the CRM workbench", "登录客户经营工作台";
    SignInLocal => "Development: sign in as one of the demo's people", "开发环境：以演示人员身份登录";
    SignInToken => "Sign in with an access token", "使用访问令牌登录";
    CheckSpan => "Check the latest checkpoint's events against what it sealed (reads them all)", "核对最新检查点封存的事件（需读取全部事件）";
    SignInOidc => "Sign in with your bank account", "使用行内统一身份认证登录";
    SignInOidcButton => "Sign in through the bank's identity provider", "通过行内统一身份认证登录";
    AccessToken => "Access token", "访问令牌";
    SignInFailed => "Sign-in failed", "登录失败";
    NotFoundTitle => "Not found", "未找到";
    ForbiddenTitle => "Not allowed", "无权访问";
    ErrorTitle => "Something went wrong", "出错了";
    BackHome => "Back to the workbench", "返回工作台";
    LocalTimes => "Times are local", "时间为本地时间";
    Masked => "masked for your role", "按角色脱敏";
    FirstTouchProtection => "First-touch protection (首触保护)", "首触保护";
    Referral => "Referral (转介)", "转介";
    NavKpis => "KPIs", "经营指标";
    NavComplaints => "Complaints", "投诉管理";
    // The manager KPIs page.
    KpisTitle => "Manager KPIs", "客户经理经营指标";
    KpisIntro => "Per manager, team or region and per local day, week or month. A fact counts for the manager it names: the contact's manager; the owner at the instant of a stage move or when a complaint was logged; the referrer; the manager whose ownership period ended. Teams and regions add up their managers as they are assigned now. Snapshot figures are taken at the end of the period, or now for the running period.", "按客户经理、团队或区域，按本地日、周或月统计。每项事实计入其所指的客户经理：联系记录计入联系人；阶段变化和投诉计入当时的归属客户经理；转介计入推荐人；归属期结束计入原归属客户经理。团队和区域按当前的人员归属汇总其客户经理。快照类指标取周期末，进行中的周期取当前时刻。";
    Level => "Level", "统计层级";
    Granularity => "Granularity", "时间粒度";
    GranDay => "Day", "日";
    GranWeek => "Week", "周";
    GranMonth => "Month", "月";
    Period => "Period", "周期";
    KpiToChart => "KPI to chart", "图表指标";
    Trend => "Trend", "趋势";
    ChartCap => "the 8 largest by portfolio at the end of the period", "仅显示期末保有客户数最多的 8 个";
    Definitions => "Definitions", "指标定义";
    Definition => "Definition", "定义";
    UnitPercent => "per cent", "百分比";
    UnitMinutes => "minutes", "分钟";
    UnitMoney => "major currency units", "元";
    MinutesShort => "min", "分";
    KpiPortfolio => "Portfolio", "保有客户数";
    KpiTierHigh => "High tier", "高价值客户";
    KpiTierMid => "Mid tier", "中价值客户";
    KpiTierLow => "Low tier", "低价值客户";
    KpiValue => "Value under management", "管理资产规模";
    KpiCoverage => "Contact coverage", "联系覆盖率";
    KpiOverdue => "Overdue follow-ups", "逾期未跟进";
    KpiContacts => "Contacts", "联系次数";
    KpiWon => "New customers won", "新增成交客户";
    KpiLeadsOwned => "Leads owned", "名下线索";
    KpiLeadsConverted => "Leads converted", "已转化线索";
    KpiLeadConversion => "Lead conversion rate", "线索转化率";
    KpiComplaints => "Complaints logged", "投诉受理数";
    KpiFirstP50 => "First response p50", "首次响应时长中位数";
    KpiFirstP90 => "First response p90", "首次响应时长 P90";
    KpiResolutionP50 => "Resolution p50", "解决时长中位数";
    KpiResolutionP90 => "Resolution p90", "解决时长 P90";
    KpiBreachRate => "SLA breach rate", "SLA 违约率";
    KpiReopenRate => "Reopen rate", "重开率";
    KpiSatisfaction => "Satisfaction", "满意度";
    KpiReferralsMade => "Referrals made", "转介推荐数";
    KpiReferralsConverted => "Referrals converted", "转介成交数";
    KpiReactivated => "Dormant customers reactivated", "唤醒休眠客户数";
    KpiLost => "Customers lost to the pool", "流失至公海客户数";
    KpiReturned => "Returned by pool rules", "按规则退回公海数";
    KpiPoolWarnings => "Pool warnings", "公海回收预警";
    KpiSlaWarnings => "SLA warnings", "SLA 预警次数";
    KpiSlaBreaches => "SLA breaches", "SLA 违约次数";
    KpiAutoEscalations => "Automatic escalations", "自动升级次数";
    DefPortfolio => "Customers whose ownership period by the manager holds the snapshot instant.", "快照时点处于该客户经理归属期内的客户数。";
    DefTierHigh => "Value-tier mix: portfolio customers in value tier high.", "价值等级构成：保有客户中价值等级为高的客户数。";
    DefTierMid => "Value-tier mix: portfolio customers in value tier mid.", "价值等级构成：保有客户中价值等级为中的客户数。";
    DefTierLow => "Value-tier mix: portfolio customers in value tier low (or any other tier).", "价值等级构成：保有客户中价值等级为低（或其他等级）的客户数。";
    DefValue => "Σ assets under management (aum_minor) of the portfolio; shown in major units.", "保有客户资产规模（aum_minor）之和，以元显示。";
    DefCoverage => "Portfolio customers contacted by their owner in the 30 days up to the snapshot ÷ portfolio size.", "快照前 30 天内由归属客户经理本人联系过的保有客户数 ÷ 保有客户数。";
    DefOverdue => "Portfolio customers whose next follow-up is before now (running period only).", "下次跟进时间早于当前时刻的保有客户数（仅限进行中的周期）。";
    DefContacts => "Contacts by the manager recorded in the period.", "该客户经理在本周期内记录的联系次数。";
    DefWon => "Transitions to stage customer in the period, credited to the owner at that instant.", "本周期内转入成交客户阶段的次数，计入当时的归属客户经理。";
    DefLeadsOwned => "Customers in stage lead while owned by the manager at some instant of the period.", "本周期内某一时刻处于线索阶段且归属该客户经理的客户数。";
    DefLeadsConverted => "Of the leads owned, those with a transition to customer in the period while owned by that manager.", "名下线索中，本周期内在该客户经理名下转为成交客户的客户数。";
    DefLeadConversion => "Leads owned that reached customer ÷ leads owned.", "转为成交客户的名下线索数 ÷ 名下线索数。";
    DefComplaints => "Complaints logged in the period on customers the manager owned then.", "本周期内受理的、当时归属该客户经理的客户的投诉数。";
    DefFirstP50 => "Median (nearest rank) of the first-response time of those complaints that were answered.", "已响应投诉的首次响应时长中位数（最近秩法）。";
    DefFirstP90 => "90th percentile (nearest rank) of the first-response time of those complaints that were answered.", "已响应投诉的首次响应时长第 90 百分位数（最近秩法）。";
    DefResolutionP50 => "Median (nearest rank) of the latest resolution time of those complaints resolved.", "已解决投诉最近一次解决时长的中位数（最近秩法）。";
    DefResolutionP90 => "90th percentile (nearest rank) of the latest resolution time of those complaints resolved.", "已解决投诉最近一次解决时长的第 90 百分位数（最近秩法）。";
    DefBreachRate => "Complaints answered after the 10-minute first-response SLA, or resolved late at least once, or with a recorded breach ÷ complaints.", "首次响应超过 10 分钟时限、至少一次解决超时或有超时记录的投诉数 ÷ 投诉数。";
    DefReopenRate => "Complaints reopened at least once ÷ complaints resolved at least once.", "至少重开一次的投诉数 ÷ 至少解决一次的投诉数。";
    DefSatisfaction => "Mean satisfaction score (1–5) of those closed with a score.", "结案时有评分的投诉的平均满意度（1–5 分）。";
    DefReferralsMade => "Referrals whose referrer is the manager, recorded in the period.", "推荐人为该客户经理、在本周期内记录的转介数。";
    DefReferralsConverted => "Referrals whose referrer is the manager, converted in the period.", "推荐人为该客户经理、在本周期内成交的转介数。";
    DefReactivated => "Reactivating transitions (dormant or churned → active) in the period, credited to the owner at that instant.", "本周期内休眠或流失客户被重新激活的次数，计入当时的归属客户经理。";
    DefLost => "The manager's ownership periods ended by a release to the pool in the period.", "本周期内因释放至公海而结束的该客户经理归属期数。";
    DefReturned => "Of those, automatic returns by a pool rule (no contact, lead not won) in the period.", "其中本周期内由公海规则（未联系、线索未成交）自动退回的次数。";
    DefPoolWarnings => "Warnings of a coming automatic return to the pool addressed to the manager in the period.", "本周期内发给该客户经理的即将自动退回公海的预警数。";
    DefSlaWarnings => "Complaint clocks nearing breach in the period, on customers the manager owned at that instant.", "本周期内即将超时的投诉时钟预警数，计入当时的归属客户经理。";
    DefSlaBreaches => "Complaint clocks breached in the period, on customers the manager owned at that instant.", "本周期内已超时的投诉时钟数，计入当时的归属客户经理。";
    DefAutoEscalations => "Escalations raised by a breach (not by a person) in the period, on customers the manager owned.", "本周期内因超时（而非人工）自动触发的升级次数，计入归属客户经理。";
    // The complaints pages.
    ComplaintsTitle => "Open complaints", "未结投诉";
    ComplaintsIntro => "Complaints not yet resolved, with the state of their SLA clocks at this moment.", "尚未解决的投诉，以及此刻其 SLA 时钟的状态。";
    ComplaintsByTeam => "Open complaints by team, severity and SLA state", "按团队、严重程度和 SLA 状态统计的未结投诉";
    ComplaintsList => "Open complaints, oldest first", "未结投诉（按受理时间先后）";
    Severity => "Severity", "严重程度";
    SlaState => "SLA state", "SLA 状态";
    Any => "Any", "全部";
    Total => "Total", "合计";
    SevCritical => "critical", "紧急";
    SevHigh => "high", "高";
    SevNormal => "normal", "一般";
    SevLow => "low", "低";
    SlaDue => "Within time", "时限内";
    SlaWarned => "Nearing breach", "即将超时";
    SlaBreached => "Breached", "已超时";
    SlaEscalated => "Escalated", "已升级";
    SlaDueHelp => "Its clocks run within time.", "各 SLA 时钟均在时限内。";
    SlaWarnedHelp => "A running clock's nearing-breach warning has been issued for its current deadline.", "正在计时的时钟已就其当前时限发出即将超时预警。";
    SlaBreachedHelp => "A deadline was missed: a running clock has run out (recorded yet or not), or a breach was recorded, or it was answered or resolved late.", "已错过时限：正在计时的时钟已超时（无论是否已记录），或已有超时记录，或响应、解决超时。";
    SlaEscalatedHelp => "Escalated at least once, by a breach or by a person: the team lead or the branch manager has it.", "至少升级过一次（因超时或人工升级）：已交由团队主管或网点负责人处理。";
    LoggedAt => "Logged at", "受理时间";
    ComplaintId => "Complaint ID", "投诉编号";
    ComplaintTitle => "Complaint", "投诉详情";
    Status => "Status", "状态";
    StatusOpen => "open", "处理中";
    StatusResolved => "resolved", "已解决";
    StatusClosed => "closed", "已结案";
    FirstResponseDue => "First response due", "首次响应时限";
    FirstResponseAfter => "First response after", "首次响应用时";
    ResolutionDue => "Resolution due", "解决时限";
    Escalations => "Escalations", "升级次数";
    Reopens => "Reopens", "重开次数";
    OwnerWhenLogged => "Owner when logged", "受理时的归属客户经理";
    OwnerNow => "Owner now", "当前归属客户经理";
    History => "History", "处理记录";
    HistoryUnavailable => "The history is read from the event store, which this service does not use.", "处理记录需读取事件存储，本服务未配置事件存储。";
    AllOpenComplaints => "All open complaints", "全部未结投诉";
    // The audit pages (审计).
    NavAudit => "Audit", "审计中心";
    UnavailableTitle => "Not available", "暂不可用";
    AuditTitle => "Audit: replayed from the event store", "审计中心：从事件存储回放";
    AuditIntro => "Every answer on these pages is replayed from the event store, the platform's source of truth, not from the read models the other pages show. For auditors and administrators.", "本组页面的每个结果都从事件存储（平台的权威记录）回放得出，而非其他页面所用的读模型。仅限审计人员和管理员使用。";
    AuditReplayLink => "Audit replay (审计回放) of this customer's ownership, from the event store", "从事件存储审计回放该客户的归属";
    CustomerReplay => "Customer ownership replay (审计回放)", "客户归属审计回放";
    CustomerReplayHelp => "Every change of the customer's owner, read from the customer's own stream (one stream: quick): who acted, why, and the rule and policy version that decided it. Optionally limited to a period; with an instant, the owner then.", "从该客户自身的事件流读取每一次归属变更（仅一个事件流，速度快）：操作人、原因，以及作出决定的规则和策略版本。可限定时间段；填写时刻则显示当时的归属。";
    ManagerReplay => "Manager ownership replay", "客户经理归属审计回放";
    ManagerReplayHelp => "The customers a manager held just before the start, every change in the period that gave them a customer or took one away, and the customers held just before the end.", "客户经理在期初持有的客户、期间内使其获得或失去客户的每一次变更，以及期末持有的客户。";
    WholeLogNote => "This replays the whole global log, every event ever stored: it takes seconds on a large store.", "此查询需回放整个全局日志（所有已存储的事件），数据量大时需要数秒。";
    PeriodHelp => "From is included, to is excluded. Times are local; a date alone means 00:00 that day.", "含起始时刻，不含截止时刻。时间为本地时间；只填日期表示当日 00:00。";
    CustomerIdLabel => "Customer ID", "客户编号";
    Replay => "Replay", "回放";
    PeriodShown => "Period replayed", "回放期间";
    AuditAsOfHelp => "The owner after every change at or before this instant (a change at exactly this instant counts).", "截至该时刻（含该时刻）的所有变更生效后的归属。";
    NoOwnerThen => "no owner: in the public pool (公海), or not registered yet", "无归属：在公海中，或尚未注册";
    OwnerAtStart => "Owner at the start of the period", "期初归属";
    MadeOwnerBy => "Owner since this change", "成为归属的变更";
    ChangesOfOwner => "Changes of owner, oldest first", "归属变更（按时间先后）";
    ChangesInPeriod => "Changes in the period, oldest first", "期间内的归属变更（按时间先后）";
    PreviousOwner => "Previous owner", "原归属";
    NewOwner => "New owner", "新归属";
    DecisionCol => "Decided by", "决策依据";
    AssignMethod => "method", "分配方式";
    PoolRule => "pool rule", "公海规则";
    DueAt => "due", "到期";
    CommandId => "Command ID", "命令编号";
    EventIdCol => "Event ID (stream version)", "事件编号（流版本）";
    EventId => "Event ID", "事件编号";
    LogPosition => "Log position", "全局日志位置";
    Customer360 => "Customer 360", "客户全景视图";
    HeldBefore => "Customers held just before the start", "期初持有的客户";
    HeldAtEnd => "Customers held just before the end", "期末持有的客户";
    EventsRead => "Events read", "读取事件数";
    Took => "Took", "耗时";
    Milliseconds => "ms", "毫秒";
    TamperEvidence => "Tamper evidence: hash chains (哈希链) and checkpoints (检查点)", "防篡改核查：哈希链与检查点";
    TamperEvidenceHelp => "Each customer's events form a SHA-256 hash chain; global checkpoints seal ranges of the global log and are chained to each other.", "每个客户的事件构成一条 SHA-256 哈希链；全局检查点封存全局日志的各个区间，且检查点之间首尾相连。";
    LastCheckpoint => "Last checkpoint", "最新检查点";
    NoCheckpoints => "No checkpoint has been sealed yet: every event is protected by its stream's hash chain only.", "尚未封存任何检查点：所有事件仅受其事件流哈希链保护。";
    CheckTheChain => "Check the checkpoint chain and the latest checkpoint's events", "核查检查点链及最新检查点封存的事件";
    CheckpointsTitle => "Global checkpoints (检查点)", "全局检查点";
    CheckpointSeq => "Checkpoint", "检查点";
    SealsThrough => "Seals through log position", "封存至日志位置";
    EventsSealed => "Events sealed", "封存事件数";
    HashCol => "Hash (SHA-256)", "哈希值（SHA-256）";
    SealedAt => "Sealed at", "封存时间";
    ChainLink => "Chain", "链接核查";
    Linked => "links to the one before", "与前一个相连";
    FirstLinked => "the first: chains to the zero hash", "首个检查点：链接至全零哈希";
    ChainLinked => "Linked: each checkpoint checked holds the previous one's hash and starts where it ended, and its own hash recomputes from its content.", "链接完整：所核查的每个检查点都包含前一个检查点的哈希值、起点与其终点相接，且自身哈希值可由内容重新算出。";
    ChainBroken => "Broken: the checkpoint chain does not link (see the rows marked).", "链接断裂：检查点链未能相连（见标记的行）。";
    CheckpointsChecked => "Checkpoints checked", "已核查的检查点";
    AnchorNote => "the one before them is read to check the first one's link, not itself checked", "另读取其前一个检查点，仅用于核查首个检查点的链接，本身不在核查之列";
    CpNoRecompute => "its hash does not recompute from its content", "其哈希值无法由内容重新算出";
    CpNotChained => "it does not hold the hash of the checkpoint before it", "未包含前一个检查点的哈希值";
    CpGap => "checkpoint numbers jump here: checkpoints are missing", "检查点序号在此跳跃：有检查点缺失";
    CpStart => "it does not start where the checkpoint before it ended", "起点与前一个检查点的终点不相接";
    CpDamaged => "its list of sealed events is damaged", "其封存事件列表已损坏";
    SpanTitle => "The events of the latest checkpoint", "最新检查点所封存的事件";
    SpanHelp => "Its span of the log is read again: every event must be at the position sealed with the link sealed, and its content must still recompute that link from its stream's previous link.", "重新读取其封存的日志区间：每个事件都必须位于封存时的位置、链接哈希与封存时一致，且其内容仍能由所在事件流的前一链接重新算出该链接。";
    SpanOk => "OK: the events in its span are exactly those sealed, and each one's content recomputes its link.", "通过：区间内的事件与封存时完全一致，且每个事件的内容都能重新算出其链接。";
    SpanProblems => "Problems found", "发现问题";
    EventsFound => "Events found in its span", "区间内读取到的事件";
    ContentChecked => "Events whose content recomputes their link", "内容与链接一致的事件";
    NotContentChecked => "Events not checked against their content (too many streams to look up on a page)", "未核对内容的事件（需查询的事件流过多）";
    FindingDeleted => "Deleted: sealed here but no longer in the log", "已删除：已封存但不在日志中";
    FindingInserted => "Inserted: inside the sealed span but not sealed", "被插入：位于封存区间内但未被封存";
    FindingRelinked => "Relinked: its link differs from the one sealed", "链接被改写：其链接与封存时不同";
    FindingAltered => "Altered: its content no longer recomputes its link", "被篡改：其内容已无法算出其链接";
    FindingOrder => "Out of order: versions of its stream are missing or moved before it", "顺序异常：其事件流在它之前的版本缺失或被移动";
    FullCheckNote => "This page checks the checkpoint chain and the latest checkpoint's events only. The full check is crm audit verify: it reads the whole log once, checks every stream's hash chain and every checkpoint, names the first bad event and records its result here. Keep the last checkpoint's number and hash outside the database too, to check later with crm audit verify --expect <number>:<hash>.", "本页仅核查检查点链及最新检查点封存的事件。完整核查请运行 crm audit verify：它读取一遍完整日志，核查每个事件流的哈希链和每个检查点，指出第一个有问题的事件，并将结果记录于此。另请将最新检查点的序号和哈希值保存在数据库之外，日后用 crm audit verify --expect <序号>:<哈希值> 核对。";
    FiguresPending => "Conversion, time in stage and the moves are being computed from every fact of the book: on a large book this takes a while.", "正在根据全部客户的事实计算转化率、阶段停留时长与阶段变动：客户量大时需要一些时间。";
    ReloadPage => "Reload", "重新加载";
    FiguresComputedAt => "Conversion, time in stage and the moves as computed at", "转化率、阶段停留时长与阶段变动的计算时间：";
    FiguresTook => "computing them took", "计算耗时";
    CountsPending => "The open complaints are being counted: on a large book this takes a while.", "正在统计未结投诉：客户量大时需要一些时间。";
    CountedAt => "Counted at", "统计时间";
    KpisPending => "The table is being computed: on a large book this takes a while.", "正在计算指标表：客户量大时需要一些时间。";
    KpisComputedAt => "The table as computed at", "指标表的计算时间：";
    LastVerification => "Last full verification (crm audit verify)", "最近一次完整核查（crm audit verify）";
    VerificationPassed => "Passed: every hash chain and checkpoint verified", "通过：所有哈希链与检查点均核查无误";
    VerificationFailed => "Failed: problems found", "未通过：发现的问题数";
    FirstProblem => "The first bad event", "第一个有问题的事件";
    VerifiedAt => "Verified at", "核查时间";
    VerifiedBy => "Verified by", "核查人";
    EventsChecked => "Events / streams / checkpoints checked", "已核查的事件 / 事件流 / 检查点";
    CheckedThrough => "Checked through log position", "核查至日志位置";
    NoVerification => "No full verification has been recorded yet: run crm audit verify, which records its result here.", "尚无完整核查记录：请运行 crm audit verify，其结果将记录于此。";
    ReadsTitle => "Personal-data reads (个人信息查阅记录)", "个人信息查阅记录";
    ReadsHelp => "Every answer that showed customers' personal data to a person is recorded in the event store before it is given: who, in which role, through which route, which customers and fields.", "每次向人员展示客户个人信息之前，都会先在事件存储中记录：查阅人、角色、访问接口、涉及的客户和字段。";
    ReadsScanNote => "Finding them reads the whole log: give a customer or a reader, or a period of at most 31 days.", "查找需读取整个日志：请填写客户或查阅人，或不超过 31 天的时间段。";
    ReadsNeedFilter => "Give a customer or a reader, or both from and to no more than 31 days apart: the records are found by reading the whole log.", "请填写客户或查阅人，或同时填写起止时间且间隔不超过 31 天：查找记录需读取整个日志。";
    ReadsAsk => "Give a customer, a reader or a period, then search.", "请填写客户、查阅人或时间段后查询。";
    Reader => "Reader", "查阅人";
    ReaderHelp => "person:<id> (an id alone is taken as person:<id>)", "person:<编号>（仅填编号视为 person:<编号>）";
    RoleCol => "Role", "角色";
    Route => "Route", "访问接口";
    CustomersShown => "Customers shown", "涉及客户";
    FieldsShown => "Personal fields", "个人信息字段";
    More => "more", "更多";
    Search => "Search", "检索";
    ReadsMatched => "records matched", "条记录符合条件";
    NewestShown => "the newest 200 are shown, newest first", "仅显示最新的 200 条（按时间倒序）";
    NewestFirst => "newest first", "按时间倒序";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_texts_and_no_two_share_one() {
        for lang in [Lang::En, Lang::Zh] {
            let mut seen = std::collections::HashSet::new();
            for m in ALL {
                let t = text(lang, *m);
                assert!(!t.trim().is_empty(), "{m:?} in {lang:?} is empty");
                seen.insert(t);
            }
            // A few texts may legitimately coincide (e.g. "Customers" as a count and a
            // heading), but not many: a copy-paste of a whole column would.
            assert!(seen.len() + 4 >= ALL.len(), "{lang:?}: duplicated texts");
        }
    }

    #[test]
    fn values_are_said_in_chinese_and_left_as_the_api_says_them_in_english() {
        assert_eq!(Lang::Zh.value("dormant"), "沉睡");
        assert_eq!(Lang::Zh.value("high"), "高");
        assert_eq!(Lang::En.value("dormant"), "dormant");
        assert_eq!(Lang::Zh.value("something-new"), "something-new");
    }

    #[test]
    fn the_browser_chooses_by_quality() {
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,zh;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr;q=1,zh-TW;q=0.5"), Lang::Zh);
        assert_eq!(Lang::from_accept_language("de"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
    }
}
