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
    PoolIntro => "Customers with no owner, waiting to be claimed.", "暂无归属、可被领取的客户。";
    Customer => "Customer", "客户";
    Stage => "Stage", "阶段";
    ValueTier => "Value tier", "价值等级";
    Registered => "Registered", "注册时间";
    LastContact => "Last contact", "最近联系";
    Owner => "Owner", "归属客户经理";
    OwnedSince => "Owned since", "归属起始";
    NextPage => "Next page", "下一页";
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
    Cumulative => "Cumulative", "累计转化";
    ExportCsv => "Export CSV", "导出 CSV";
    Chart => "Chart", "图表";
    Table => "Table", "表格";
    Key => "Group", "分组";
    SignInTitle => "Sign in to the CRM workbench", "登录客户经营工作台";
    SignInLocal => "Development: sign in as one of the demo's people", "开发环境：以演示人员身份登录";
    SignInToken => "Sign in with an access token", "使用访问令牌登录";
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
