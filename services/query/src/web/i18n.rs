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
