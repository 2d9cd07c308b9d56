//! The complaint entity (投诉) inside the customer aggregate, and its SLA promise.

use chrono::{DateTime, Duration, Utc};

use crate::ids::{ComplaintId, ManagerId};
use crate::values::Severity;

/// First response within 10 minutes; resolution by severity (DOMAIN.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    pub first_response: Duration,
    pub critical: Duration,
    pub high: Duration,
    pub normal: Duration,
    pub low: Duration,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self {
            first_response: Duration::minutes(10),
            critical: Duration::hours(4),
            high: Duration::hours(24),
            normal: Duration::hours(72),
            low: Duration::days(7),
        }
    }
}

impl SlaPolicy {
    pub fn resolution(&self, severity: Severity) -> Duration {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Normal => self.normal,
            Severity::Low => self.low,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplaintStatus {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

impl ComplaintStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "open",
            ComplaintStatus::Acknowledged => "acknowledged",
            ComplaintStatus::Resolved => "resolved",
            ComplaintStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintState {
    pub id: ComplaintId,
    pub severity: Severity,
    pub category: String,
    pub status: ComplaintStatus,
    /// The customer's owner when the complaint was logged.
    pub logged_owner: Option<ManagerId>,
    pub logged_at: DateTime<Utc>,
    /// When the current resolution clock started (logging, or the last reopening).
    pub clock_started_at: DateTime<Utc>,
    pub first_response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
    pub escalation_level: u8,
    pub first_response_warned: bool,
    pub first_response_breached: bool,
    /// The resolution deadline already warned about / breached (a reopening starts a
    /// new clock with a new deadline).
    pub resolution_warned_for: Option<DateTime<Utc>>,
    pub resolution_breached_for: Option<DateTime<Utc>>,
    pub resolved_by: Option<ManagerId>,
    pub reopen_count: u32,
    pub satisfaction: Option<u8>,
}

/// Highest escalation level: 1 = team lead, 2 = branch manager.
pub const MAX_ESCALATION: u8 = 2;
