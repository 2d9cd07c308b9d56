//! Who read personal data: the `PersonalDataRead` records of the query service, replayed
//! from the event store, filtered by customer, reader and period. Both shapes are read:
//! schema 1 (before: one event per customer, stream `access-<customer id>`) and schema 2
//! (now: one event per answer, stream `access-<request id>`, naming every customer and
//! field it revealed).

use chrono::{DateTime, Utc};
use crm_domain::customer::personal;
use crm_eventstore::{Log, RecordedEvent};
use serde::Serialize;
use uuid::Uuid;

use crate::AuditError;

/// What to look for; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    pub customer: Option<String>,
    pub reader: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One answer that showed personal data to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadRecord {
    pub at: DateTime<Utc>,
    /// The person (`person:<id>`).
    pub reader: String,
    pub role: String,
    /// The query service's route (`customers`, `timeline`, `pool`, …).
    pub route: String,
    /// The customers whose personal data the answer showed.
    pub customers: Vec<String>,
    /// Which personal fields (empty in schema 1 records, which did not say).
    pub fields: Vec<String>,
    pub event_id: Uuid,
    pub position: String,
}

impl ReadFilter {
    fn accepts(&self, r: &ReadRecord) -> bool {
        self.customer
            .as_ref()
            .is_none_or(|c| r.customers.iter().any(|x| x == c))
            && self.reader.as_ref().is_none_or(|x| *x == r.reader)
            && self.from.is_none_or(|from| r.at >= from)
            && self.to.is_none_or(|to| r.at < to)
    }
}

/// The record an access event holds, whichever its schema.
fn record(e: &RecordedEvent) -> Result<ReadRecord, AuditError> {
    let p = &e.payload;
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let list = |k: &str| -> Vec<String> {
        p[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let customers = match e.schema_version {
        1 => vec![text("customer_id")],
        2 => list("customers"),
        v => {
            return Err(AuditError::Unreadable {
                event_id: e.event_id,
                event_type: e.event_type.clone(),
                version: e.stream_version,
                stream: e.stream_id.clone(),
                reason: format!("schema version {v} is unknown to this release"),
            })
        }
    };
    Ok(ReadRecord {
        at: e.metadata.occurred_at,
        reader: text("reader"),
        role: text("role"),
        route: text("route"),
        customers,
        fields: list("fields"),
        event_id: e.event_id,
        position: e.log_position.to_string(),
    })
}

/// Every record matching `filter`, in log order; `progress` hears the events read.
pub async fn personal_data_reads<S: Log>(
    store: &S,
    filter: &ReadFilter,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Vec<ReadRecord>, AuditError> {
    let mut out = Vec::new();
    crate::scan_log(store, progress, |e| {
        if e.event_type == personal::PERSONAL_DATA_READ
            && e.stream_id.starts_with(personal::ACCESS_LOG_PREFIX)
        {
            let r = record(e)?;
            if filter.accepts(&r) {
                out.push(r);
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}
