//! Where the read models are decided: one stored event in, the read-model changes it
//! causes out, as SQL statements that run unchanged on PostgreSQL and SQLite. Pure: no
//! I/O here; [`crate::store`] runs the statements in the projector's transaction.

use crm_domain::customer::personal;
use crm_domain::{CustomerEvent, DomainEvent, ManagerEvent};
use crm_eventstore::RecordedEvent;

use crate::schema::PROJECTIONS;

/// A value bound to a statement. Ids and names are text, instants are microseconds since
/// the epoch, flags are 0/1: the types both backends compare exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Arg::NullInt, Arg::Int)
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        v.map_or(Arg::NullText, Arg::Text)
    }
}

/// One statement with `$n` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Arg>,
}

fn stmt(sql: &'static str, args: Vec<Arg>) -> Stmt {
    Stmt { sql, args }
}

/// Microseconds since the Unix epoch.
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Why an event can not be projected (it goes to the dead-letter stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("event of stream {stream} names customer {customer}")]
    WrongStream { stream: String, customer: String },
}

/// The changes of one event, per projection, in the order of
/// [`crate::schema::PROJECTIONS`].
pub type Changes = Vec<Vec<Stmt>>;

/// The read-model changes of one event, per projection.
pub fn project(e: &RecordedEvent) -> Result<Changes, Poison> {
    let stmts = statements(e)?;
    let mut out: Changes = vec![Vec::new(); PROJECTIONS.len()];
    for s in stmts {
        out[projection_of(s.sql)].push(s);
    }
    Ok(out)
}

/// Which projection a statement writes: the one owning its target table.
pub fn projection_of(sql: &str) -> usize {
    let target = ["INSERT INTO ", "UPDATE ", "DELETE FROM "]
        .iter()
        .find_map(|kw| sql.strip_prefix(kw))
        .and_then(|rest| rest.split([' ', '(']).next())
        .unwrap_or_default();
    PROJECTIONS
        .iter()
        .position(|p| p.table_names().iter().any(|t| t == target))
        .unwrap_or_else(|| panic!("statement writes no read-model table: {sql}"))
}

/// The read-model changes of one event, in order.
pub fn statements(e: &RecordedEvent) -> Result<Vec<Stmt>, Poison> {
    if e.stream_id.starts_with(personal::ACCESS_LOG_PREFIX) {
        // Records of who read personal data: audit evidence, not read-model input.
        return Ok(Vec::new());
    }
    let decoded = DomainEvent::decode(&e.event_type, e.schema_version, &e.payload)
        .map_err(|err| Poison::Decode(err.to_string()))?;
    match decoded {
        DomainEvent::Customer(c) => {
            let customer = c.customer_id().to_string();
            if e.stream_id != format!("customer-{customer}") {
                return Err(Poison::WrongStream {
                    stream: e.stream_id.clone(),
                    customer,
                });
            }
            Ok(customer_changes(e, &customer, &c))
        }
        DomainEvent::Manager(m) => Ok(manager_changes(&m)),
        // The policy's history is read from the event store (audit), not projected.
        DomainEvent::Policy(_) => Ok(Vec::new()),
    }
}

const CLOSE_PERIOD: &str =
    "UPDATE rm_ownership_periods SET to_us = $2, end_event = $3, ended_by = $4 \
     WHERE customer_id = $1 AND to_us IS NULL";
const OPEN_PERIOD: &str =
    "INSERT INTO rm_ownership_periods (customer_id, start_version, manager_id, team, region, \
     from_us, start_event, start_reason, started_by, start_event_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const OPEN_STAGE: &str =
    "INSERT INTO rm_stage_periods (customer_id, start_version, stage, from_us) \
     VALUES ($1, $2, $3, $4)";
/// The owner at the instant of the move is read from the analytics projection's own owner
/// table, kept in step by the same events.
const TRANSITION: &str =
    "INSERT INTO rm_stage_transitions (customer_id, version, from_stage, to_stage, at_us, \
     reactivated, owner_id) VALUES ($1, $2, $3, $4, $5, $6, \
     (SELECT owner_id FROM rm_analytics_owners WHERE customer_id = $1))";
/// The analytics projection's own view of the owner.
const ANALYTICS_OWNER: &str =
    "INSERT INTO rm_analytics_owners (customer_id, owner_id) VALUES ($1, $2) \
     ON CONFLICT (customer_id) DO UPDATE SET owner_id = excluded.owner_id";
const POOL_EVENT: &str =
    "INSERT INTO rm_pool_events (customer_id, version, kind, manager_id, cause, due_us, at_us, \
     policy_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Warnings and escalations carry no owner: the analytics projection's own owner at the
/// time is recorded, as for stage transitions.
const SLA_EVENT: &str =
    "INSERT INTO rm_sla_events (customer_id, version, complaint_id, kind, clock, due_us, level, \
     escalated_to, automatic, owner_id, at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     COALESCE($10, (SELECT owner_id FROM rm_analytics_owners WHERE customer_id = $1)), $11)";
const SET_OWNER: &str =
    "UPDATE rm_customers SET owner_id = $2, owner_team = $3, owner_region = $4, \
     owned_since_us = $5 WHERE customer_id = $1";

fn customer_changes(e: &RecordedEvent, customer: &str, c: &CustomerEvent) -> Vec<Stmt> {
    let at = micros(e.metadata.occurred_at);
    let version = e.stream_version as i64;
    let actor = e.metadata.actor.as_str();
    let mut out = Vec::with_capacity(4);
    // Ownership changes: close the open period, open the next one.
    // The open ownership period ends with this event.
    let close_period = || {
        stmt(
            CLOSE_PERIOD,
            vec![
                customer.into(),
                at.into(),
                e.event_type.as_str().into(),
                actor.into(),
            ],
        )
    };
    let mut take = |manager: String, team: &str, region: &str, reason: Option<String>| {
        out.push(close_period());
        out.push(stmt(
            OPEN_PERIOD,
            vec![
                customer.into(),
                (e.stream_version as i64).into(),
                manager.clone().into(),
                team.into(),
                region.into(),
                at.into(),
                e.event_type.as_str().into(),
                reason.into(),
                actor.into(),
                e.event_id.to_string().into(),
            ],
        ));
        out.push(stmt(
            ANALYTICS_OWNER,
            vec![customer.into(), manager.clone().into()],
        ));
        out.push(stmt(
            SET_OWNER,
            vec![
                customer.into(),
                manager.into(),
                team.into(),
                region.into(),
                at.into(),
            ],
        ));
    };
    match c {
        CustomerEvent::CustomerRegistered(r) => {
            out.push(stmt(
                OPEN_STAGE,
                vec![
                    customer.into(),
                    version.into(),
                    r.stage.as_str().into(),
                    micros(r.registered_at).into(),
                ],
            ));
            out.push(stmt(
                TRANSITION,
                vec![
                    customer.into(),
                    version.into(),
                    Arg::NullText,
                    r.stage.as_str().into(),
                    micros(r.registered_at).into(),
                    0i64.into(),
                ],
            ));
            out.push(stmt(
            "INSERT INTO rm_customers (customer_id, customer_type, display_name, region, branch, \
             first_touch_channel, stage, value_tier, aum_minor, registered_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                customer.into(),
                r.customer_type.as_str().into(),
                r.display_name.as_str().into(),
                r.region.as_str().into(),
                r.branch.as_ref().map(|b| b.as_str().to_string()).into(),
                r.first_touch_channel.as_str().into(),
                r.stage.as_str().into(),
                r.value_tier.as_str().into(),
                r.aum_minor.into(),
                micros(r.registered_at).into(),
            ],
            ));
        }
        CustomerEvent::ProfileUpdated(p) => out.push(stmt(
            "UPDATE rm_customers SET display_name = COALESCE($2, display_name), \
             region = COALESCE($3, region), branch = COALESCE($4, branch), \
             aum_minor = COALESCE($5, aum_minor) WHERE customer_id = $1",
            vec![
                customer.into(),
                p.display_name.clone().into(),
                p.region.as_ref().map(|r| r.as_str().to_string()).into(),
                p.branch.as_ref().map(|b| b.as_str().to_string()).into(),
                p.aum_minor.into(),
            ],
        )),
        CustomerEvent::OwnerAssigned(a) => take(
            a.manager_id.to_string(),
            a.team.as_str(),
            a.region.as_str(),
            Some(a.reason.clone()),
        ),
        CustomerEvent::OwnershipTransferred(t) => take(
            t.to_manager.to_string(),
            t.to_team.as_str(),
            t.to_region.as_str(),
            Some(t.reason.clone()),
        ),
        CustomerEvent::ClaimedFromPool(cl) => take(
            cl.manager_id.to_string(),
            cl.team.as_str(),
            cl.region.as_str(),
            None,
        ),
        CustomerEvent::ReleasedToPool(r) => {
            if let Some(rule) = &r.rule {
                out.push(stmt(
                    POOL_EVENT,
                    vec![
                        customer.into(),
                        version.into(),
                        "return".into(),
                        r.previous_owner.to_string().into(),
                        rule.cause.as_str().into(),
                        micros(rule.due_at).into(),
                        at.into(),
                        i64::from(rule.policy_version).into(),
                    ],
                ));
            }
            out.push(close_period());
            out.push(stmt(
                SET_OWNER,
                vec![
                    customer.into(),
                    Arg::NullText,
                    Arg::NullText,
                    Arg::NullText,
                    Arg::NullInt,
                ],
            ));
            out.push(stmt(ANALYTICS_OWNER, vec![customer.into(), Arg::NullText]));
        }
        CustomerEvent::ContactRecorded(k) => {
            // A contact recorded late (dated when it happened) does not move the last
            // contact back, nor replace a later contact's follow-up.
            out.push(stmt(
                "UPDATE rm_customers SET last_contact_at_us = $2, next_follow_up_us = $3 \
                 WHERE customer_id = $1 AND (last_contact_at_us IS NULL OR last_contact_at_us <= $2)",
                vec![
                    customer.into(),
                    micros(k.contacted_at).into(),
                    k.next_follow_up_at.map(micros).into(),
                ],
            ));
            out.push(stmt(
                "INSERT INTO rm_contacts (customer_id, version, manager_id, by_owner, channel, outcome, at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    customer.into(),
                    version.into(),
                    k.manager_id.to_string().into(),
                    i64::from(k.by_owner).into(),
                    k.channel.as_str().into(),
                    k.outcome.as_str().into(),
                    micros(k.contacted_at).into(),
                ],
            ));
        }
        CustomerEvent::LifecycleStageChanged(l) => {
            out.push(stmt(
                "UPDATE rm_customers SET stage = $2 WHERE customer_id = $1",
                vec![customer.into(), l.to.as_str().into()],
            ));
            out.push(stmt(
                "UPDATE rm_stage_periods SET to_us = $2 WHERE customer_id = $1 AND to_us IS NULL",
                vec![customer.into(), at.into()],
            ));
            out.push(stmt(
                OPEN_STAGE,
                vec![
                    customer.into(),
                    version.into(),
                    l.to.as_str().into(),
                    at.into(),
                ],
            ));
            out.push(stmt(
                TRANSITION,
                vec![
                    customer.into(),
                    version.into(),
                    l.from.as_str().into(),
                    l.to.as_str().into(),
                    at.into(),
                    i64::from(l.reactivated).into(),
                ],
            ));
        }
        CustomerEvent::ComplaintLogged(l) => out.push(stmt(
            "INSERT INTO rm_complaints (complaint_id, customer_id, owner_id, severity, logged_at_us, \
             resolutions, resolution_breaches, reopens, escalations) VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0)",
            vec![
                l.complaint_id.to_string().into(),
                customer.into(),
                l.owner.map(|o| o.to_string()).into(),
                l.severity.as_str().into(),
                micros(l.logged_at).into(),
            ],
        )),
        CustomerEvent::ComplaintAcknowledged(a) => out.push(stmt(
            "UPDATE rm_complaints SET first_response_s = $2, first_response_in_sla = $3 \
             WHERE complaint_id = $1",
            vec![
                a.complaint_id.to_string().into(),
                a.response_seconds.into(),
                i64::from(a.within_sla).into(),
            ],
        )),
        CustomerEvent::ComplaintEscalated(x) => {
            out.push(stmt(
                "UPDATE rm_complaints SET escalations = escalations + 1 WHERE complaint_id = $1",
                vec![x.complaint_id.to_string().into()],
            ));
            out.push(stmt(
                SLA_EVENT,
                vec![
                    customer.into(),
                    version.into(),
                    x.complaint_id.to_string().into(),
                    "escalation".into(),
                    Arg::NullText,
                    Arg::NullInt,
                    i64::from(x.level).into(),
                    x.escalated_to.map(|m| m.to_string()).into(),
                    i64::from(x.automatic).into(),
                    Arg::NullText,
                    at.into(),
                ],
            ));
        }
        CustomerEvent::ComplaintResolved(r) => out.push(stmt(
            "UPDATE rm_complaints SET resolved_at_us = $2, resolution_s = $3, resolution_in_sla = $4, \
             resolved_by = $5, resolutions = resolutions + 1, \
             resolution_breaches = resolution_breaches + $6 WHERE complaint_id = $1",
            vec![
                r.complaint_id.to_string().into(),
                at.into(),
                r.resolution_seconds.into(),
                i64::from(r.within_sla).into(),
                r.resolved_by.to_string().into(),
                i64::from(!r.within_sla).into(),
            ],
        )),
        CustomerEvent::ComplaintReopened(r) => out.push(stmt(
            "UPDATE rm_complaints SET reopens = reopens + 1, resolved_at_us = NULL \
             WHERE complaint_id = $1",
            vec![r.complaint_id.to_string().into()],
        )),
        CustomerEvent::ComplaintClosed(c) => out.push(stmt(
            "UPDATE rm_complaints SET closed_at_us = $2, satisfaction = $3 WHERE complaint_id = $1",
            vec![
                c.complaint_id.to_string().into(),
                at.into(),
                c.satisfaction.map(i64::from).into(),
            ],
        )),
        CustomerEvent::PurchaseRecorded(p) => out.push(stmt(
            "INSERT INTO rm_purchases (purchase_id, customer_id, manager_id, product_line, amount_minor, \
             currency, at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                p.purchase_id.to_string().into(),
                customer.into(),
                p.manager_id.map(|m| m.to_string()).into(),
                p.product_line.as_str().into(),
                p.amount_minor.into(),
                p.currency.as_str().into(),
                at.into(),
            ],
        )),
        CustomerEvent::ReferralRecorded(r) => out.push(stmt(
            "INSERT INTO rm_referrals (referral_id, customer_id, referrer, referred_to, recorded_at_us) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                r.referral_id.to_string().into(),
                customer.into(),
                r.referrer.as_str().into(),
                r.referred_to.to_string().into(),
                at.into(),
            ],
        )),
        CustomerEvent::ReferralConverted(r) => out.push(stmt(
            "UPDATE rm_referrals SET converted_at_us = $2 WHERE referral_id = $1",
            vec![r.referral_id.to_string().into(), at.into()],
        )),
        CustomerEvent::ValueTierChanged(t) => out.push(stmt(
            "UPDATE rm_customers SET value_tier = $2 WHERE customer_id = $1",
            vec![customer.into(), t.to.as_str().into()],
        )),
        CustomerEvent::PoolReturnWarned(w) => out.push(stmt(
            POOL_EVENT,
            vec![
                customer.into(),
                version.into(),
                "warning".into(),
                w.owner.to_string().into(),
                w.cause.as_str().into(),
                micros(w.returns_at).into(),
                at.into(),
                i64::from(w.policy_version).into(),
            ],
        )),
        CustomerEvent::ComplaintSlaWarned(_) | CustomerEvent::ComplaintSlaBreached(_) => {
            let (kind, complaint, clock, due, recorded_owner) = match c {
                CustomerEvent::ComplaintSlaWarned(w) => {
                    ("warning", w.complaint_id, w.clock, w.due_at, None)
                }
                CustomerEvent::ComplaintSlaBreached(b) => {
                    ("breach", b.complaint_id, b.clock, b.due_at, b.owner)
                }
                _ => unreachable!("matched above"),
            };
            out.push(stmt(
                SLA_EVENT,
                vec![
                    customer.into(),
                    version.into(),
                    complaint.to_string().into(),
                    kind.into(),
                    clock.as_str().into(),
                    micros(due).into(),
                    Arg::NullInt,
                    Arg::NullText,
                    1i64.into(),
                    recorded_owner.map(|o| o.to_string()).into(),
                    at.into(),
                ],
            ));
        }
        CustomerEvent::OwnershipLocked(_) | CustomerEvent::OwnershipUnlocked(_) => {}
        CustomerEvent::PersonalDataErased(_) => out.push(stmt(
            "UPDATE rm_customers SET display_name = $2 WHERE customer_id = $1",
            vec![customer.into(), personal::ERASED.into()],
        )),
    }
    out.push(stmt(
        "INSERT INTO rm_timeline (customer_id, version, event_id, event_type, occurred_at_us, actor, \
         summary) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            customer.into(),
            (e.stream_version as i64).into(),
            e.event_id.to_string().into(),
            e.event_type.as_str().into(),
            at.into(),
            actor.into(),
            summary(c).into(),
        ],
    ));
    out
}

fn manager_changes(m: &ManagerEvent) -> Vec<Stmt> {
    match m {
        ManagerEvent::ManagerRegistered(r) => vec![stmt(
            "INSERT INTO rm_managers (manager_id, name, role, team, region, branch, holding_limit, active) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
            vec![
                r.manager_id.to_string().into(),
                r.name.as_str().into(),
                r.role.as_str().into(),
                r.team.as_str().into(),
                r.region.as_str().into(),
                r.branch.as_str().into(),
                i64::from(r.holding_limit).into(),
            ],
        )],
        ManagerEvent::ManagerUpdated(u) => vec![stmt(
            "UPDATE rm_managers SET name = COALESCE($2, name), role = COALESCE($3, role), \
             team = COALESCE($4, team), region = COALESCE($5, region), branch = COALESCE($6, branch), \
             holding_limit = COALESCE($7, holding_limit) WHERE manager_id = $1",
            vec![
                u.manager_id.to_string().into(),
                u.name.clone().into(),
                u.role.map(|r| r.as_str().to_string()).into(),
                u.team.as_ref().map(|t| t.as_str().to_string()).into(),
                u.region.as_ref().map(|r| r.as_str().to_string()).into(),
                u.branch.as_ref().map(|b| b.as_str().to_string()).into(),
                u.holding_limit.map(i64::from).into(),
            ],
        )],
        ManagerEvent::ManagerDeactivated(d) => vec![stmt(
            "UPDATE rm_managers SET active = 0 WHERE manager_id = $1",
            vec![d.manager_id.to_string().into()],
        )],
        ManagerEvent::ManagerReactivated(r) => vec![stmt(
            "UPDATE rm_managers SET active = 1 WHERE manager_id = $1",
            vec![r.manager_id.to_string().into()],
        )],
    }
}

/// One line a person reads in the customer's timeline.
pub fn summary(c: &CustomerEvent) -> String {
    match c {
        CustomerEvent::CustomerRegistered(r) => format!(
            "registered as {} in {} (first touch: {})",
            r.customer_type.as_str(),
            r.region.as_str(),
            r.first_touch_channel.as_str()
        ),
        CustomerEvent::ProfileUpdated(_) => "profile updated".into(),
        CustomerEvent::OwnerAssigned(a) => match &a.policy {
            Some(p) => format!(
                "assigned to {} ({}) by policy v{}, rule {:?}, {}",
                a.manager_id,
                a.team.as_str(),
                p.policy_version,
                p.rule,
                p.method.as_str().replace('_', " ")
            ),
            None => format!(
                "assigned to {} ({}): {}",
                a.manager_id,
                a.team.as_str(),
                a.reason
            ),
        },
        CustomerEvent::OwnershipTransferred(t) => format!(
            "transferred from {} to {} ({}): {}",
            t.from_manager,
            t.to_manager,
            t.to_team.as_str(),
            t.reason
        ),
        CustomerEvent::ReleasedToPool(r) => match &r.rule {
            Some(_) => format!(
                "returned to the pool from {}: {}",
                r.previous_owner, r.reason
            ),
            None => format!("released to the pool by {}: {}", r.previous_owner, r.reason),
        },
        CustomerEvent::ClaimedFromPool(c) => format!("claimed from the pool by {}", c.manager_id),
        CustomerEvent::ContactRecorded(k) => format!(
            "{} {} contact by {}: {}",
            k.direction.as_str(),
            k.channel.as_str(),
            k.manager_id,
            k.outcome.as_str()
        ),
        CustomerEvent::ComplaintLogged(l) => format!(
            "complaint {} logged ({} severity, {})",
            l.complaint_id,
            l.severity.as_str(),
            l.category
        ),
        CustomerEvent::ComplaintAcknowledged(a) => format!(
            "complaint {} acknowledged by {} after {} s{}",
            a.complaint_id,
            a.by,
            a.response_seconds,
            if a.within_sla { "" } else { " (SLA missed)" }
        ),
        CustomerEvent::ComplaintEscalated(x) => format!(
            "complaint {} escalated to level {}: {}",
            x.complaint_id, x.level, x.reason
        ),
        CustomerEvent::ComplaintResolved(r) => format!(
            "complaint {} resolved by {}{}",
            r.complaint_id,
            r.resolved_by,
            if r.within_sla { "" } else { " (SLA missed)" }
        ),
        // The reason is personal data (free text): kept in the payload, encrypted.
        CustomerEvent::ComplaintReopened(r) => format!("complaint {} reopened", r.complaint_id),
        CustomerEvent::PersonalDataErased(e) => {
            format!("personal data erased by {}: {}", e.erased_by, e.reason)
        }
        CustomerEvent::ComplaintClosed(c) => match c.satisfaction {
            Some(s) => format!("complaint {} closed, satisfaction {s}/5", c.complaint_id),
            None => format!("complaint {} closed", c.complaint_id),
        },
        CustomerEvent::PurchaseRecorded(p) => format!(
            "purchase of {} for {} {}",
            p.product_line,
            p.amount_minor as f64 / 100.0,
            p.currency
        ),
        CustomerEvent::ReferralRecorded(r) => {
            format!("referred by {} to {}", r.referrer, r.referred_to)
        }
        CustomerEvent::ReferralConverted(r) => {
            format!("referral by {} converted", r.referrer)
        }
        CustomerEvent::LifecycleStageChanged(l) => format!(
            "stage {} → {}{}",
            l.from.as_str(),
            l.to.as_str(),
            if l.reactivated {
                " (reactivated)".to_string()
            } else if l.automatic {
                format!(" ({})", l.reason)
            } else {
                String::new()
            }
        ),
        CustomerEvent::ValueTierChanged(t) => format!(
            "value tier {} → {} ({} held or bought)",
            t.from.as_str(),
            t.to.as_str(),
            t.basis_minor as f64 / 100.0
        ),
        CustomerEvent::PoolReturnWarned(w) => format!(
            "owner {} warned: back to the pool on {} ({})",
            w.owner,
            w.returns_at.format("%Y-%m-%d %H:%M"),
            w.cause.as_str().replace('_', " ")
        ),
        CustomerEvent::OwnershipLocked(l) => match l.until {
            Some(u) => format!(
                "locked against the pool until {}: {}",
                u.format("%Y-%m-%d"),
                l.reason
            ),
            None => format!("locked against the pool: {}", l.reason),
        },
        CustomerEvent::OwnershipUnlocked(u) => format!("unlocked: {}", u.reason),
        CustomerEvent::ComplaintSlaWarned(w) => format!(
            "complaint {} nearing its {} deadline ({})",
            w.complaint_id,
            w.clock.as_str().replace('_', " "),
            w.due_at.format("%Y-%m-%d %H:%M")
        ),
        CustomerEvent::ComplaintSlaBreached(b) => format!(
            "complaint {} breached its {} deadline ({})",
            b.complaint_id,
            b.clock.as_str().replace('_', " "),
            b.due_at.format("%Y-%m-%d %H:%M")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::PROJECTIONS;

    /// Every statement touches only the tables of the projection it belongs to, so each
    /// projection can be rebuilt alone.
    #[test]
    fn statements_stay_within_their_projection() {
        let fixtures: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../domain/tests/fixtures/events_v1.json"))
                .unwrap();
        let all_tables: Vec<(usize, String)> = PROJECTIONS
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.table_names().into_iter().map(move |t| (i, t)))
            .collect();
        let mut covered = vec![false; PROJECTIONS.len()];
        for f in fixtures {
            let t = f["event_type"].as_str().unwrap();
            let payload = f["payload"].clone();
            let stream = match (payload.get("customer_id"), payload.get("manager_id")) {
                (Some(c), _) => format!("customer-{}", c.as_str().unwrap()),
                (None, Some(m)) => format!("manager-{}", m.as_str().unwrap()),
                (None, None) => "policy-ownership".to_string(),
            };
            let e = RecordedEvent {
                log_position: crm_eventstore::LogPosition::new(1, 1),
                stream_id: stream,
                stream_version: 1,
                event_id: uuid::Uuid::nil(),
                event_type: t.into(),
                schema_version: 1,
                payload,
                metadata: crm_eventstore::EventMetadata {
                    command_id: uuid::Uuid::nil(),
                    correlation_id: uuid::Uuid::nil(),
                    causation_id: None,
                    actor: "person:x".into(),
                    occurred_at: chrono::Utc::now(),
                    recorded_at: chrono::Utc::now(),
                },
                chain_hash: Default::default(),
            };
            let changes = project(&e).unwrap_or_else(|p| panic!("{t}: {p}"));
            for (i, stmts) in changes.iter().enumerate() {
                for s in stmts {
                    covered[i] = true;
                    for (j, table) in &all_tables {
                        let mentions = s
                            .sql
                            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .any(|w| w == table);
                        assert!(!mentions || *j == i, "{t}: {} reads {table}", s.sql);
                    }
                }
            }
        }
        assert!(
            covered.iter().all(|c| *c),
            "every projection has statements"
        );
    }
}
