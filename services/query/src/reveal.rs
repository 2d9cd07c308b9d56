//! Personal data on the way out: masked for analysts, decrypted for the others, and every
//! read by a person recorded in the event store before the answer leaves.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use crm_domain::customer::personal;
use crm_eventstore::{
    Append, AppendRequest, CommandMeta, ExpectedVersion, NewEvent, RecordedEvent, Streams,
};
use crm_projections::queries::{CustomerRow, TimelineRow};
use serde::Serialize;

use crate::caller::Caller;
use crate::problem::Problem;
use crate::AppState;

/// What analysts see instead of a personal field.
pub(crate) const MASKED: &str = "***";

impl AppState {
    /// Personal fields of customer rows for the caller: masked for analysts, decrypted
    /// for the others, and the read recorded when the caller is a person.
    pub(crate) async fn reveal_customers(
        &self,
        caller: &Caller,
        route: &str,
        rows: &mut [CustomerRow],
    ) -> Result<(), Problem> {
        let mut read = Reads::default();
        for row in rows.iter_mut() {
            if !crm_privacy::is_sealed(&row.display_name) {
                continue;
            }
            if caller.masked() {
                row.display_name = MASKED.into();
                continue;
            }
            let revealed = self
                .reveal(&row.customer_id, "display_name", &row.display_name)
                .await?;
            if revealed != personal::WITHHELD && revealed != personal::ERASED {
                read.add(&row.customer_id, ["display_name"]);
            }
            row.display_name = revealed;
        }
        self.record_reads(caller, route, read).await
    }

    pub(crate) async fn reveal(
        &self,
        customer: &str,
        field: &str,
        text: &str,
    ) -> Result<String, Problem> {
        if !crm_privacy::is_sealed(text) {
            return Ok(text.to_string());
        }
        let Some(vault) = &self.security.vault else {
            return Ok(personal::WITHHELD.to_string());
        };
        let (text, _) = vault
            .reveal(&format!("customer-{customer}"), field, text)
            .await
            .map_err(Problem::privacy)?;
        Ok(text)
    }

    /// A page of a customer's timeline as answered: each row with its event's payload,
    /// read from the event store by stream and version (the read model keeps no copy),
    /// its personal fields masked for analysts and decrypted for the others (the read
    /// recorded). Without an event store the payloads are `null`.
    pub(crate) async fn timeline_items(
        &self,
        caller: &Caller,
        rows: Vec<TimelineRow>,
    ) -> Result<Vec<TimelineItem>, Problem> {
        let mut payloads = self.timeline_events(&rows).await?;
        let mut read = Reads::default();
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let event = match payloads.remove(&row.version) {
                Some(e) if e.event_id.to_string() == row.event_id => e,
                Some(e) => {
                    // The read models and the store disagree (restored from different
                    // backups?): no payload rather than another event's.
                    tracing::error!(
                        customer = %row.customer_id,
                        version = row.version,
                        read_model_event = %row.event_id,
                        store_event = %e.event_id,
                        "timeline row and event store disagree; answered without payload"
                    );
                    items.push(TimelineItem { row, payload: None });
                    continue;
                }
                None => {
                    items.push(TimelineItem { row, payload: None });
                    continue;
                }
            };
            let payload = self.shown_payload(caller, &row, event, &mut read).await?;
            items.push(TimelineItem {
                row,
                payload: Some(payload),
            });
        }
        self.record_reads(caller, "timeline", read).await?;
        Ok(items)
    }

    /// The stored events of a timeline page (rows newest first, all of one customer), by
    /// stream version, read in one range.
    async fn timeline_events(
        &self,
        rows: &[TimelineRow],
    ) -> Result<HashMap<i64, RecordedEvent>, Problem> {
        let (Some(events), Some(newest), Some(oldest)) =
            (&self.security.events, rows.first(), rows.last())
        else {
            return Ok(HashMap::new());
        };
        let stream = format!("customer-{}", newest.customer_id);
        let after = (oldest.version - 1).max(0) as u64;
        let page = events
            .read_stream_range(&stream, after, newest.version.max(0) as u64)
            .await
            .map_err(Problem::store)?;
        Ok(page
            .into_iter()
            .map(|e| (e.stream_version as i64, e))
            .collect())
    }

    /// An event's payload as the caller sees it, as canonical text (fields in declared
    /// order): personal fields decrypted (the read added to `read`), or masked.
    async fn shown_payload(
        &self,
        caller: &Caller,
        row: &TimelineRow,
        event: RecordedEvent,
        read: &mut Reads,
    ) -> Result<String, Problem> {
        let mut payload = event.payload;
        let personal_fields = personal::fields(&row.event_type);
        match self.security.vault.as_ref().filter(|_| !caller.masked()) {
            Some(vault) => {
                let stream = format!("customer-{}", row.customer_id);
                let opened = vault
                    .open(&stream, &row.event_type, &mut payload)
                    .await
                    .map_err(Problem::privacy)?;
                if opened == crm_privacy::Opened::Revealed {
                    let present = personal_fields
                        .iter()
                        .copied()
                        .filter(|f| payload.get(*f).is_some_and(|v| !v.is_null()));
                    read.add(&row.customer_id, present);
                }
            }
            None => {
                let shown = if caller.masked() {
                    MASKED
                } else {
                    personal::WITHHELD
                };
                for f in personal_fields {
                    if let Some(v) = payload.get_mut(*f) {
                        if v.as_str().is_some_and(crm_privacy::is_sealed) {
                            *v = serde_json::Value::String(shown.into());
                        }
                    }
                }
            }
        }
        Ok(
            match crm_domain::CustomerEvent::decode(&row.event_type, event.schema_version, &payload)
            {
                Ok(e) => e.payload_text(),
                Err(_) => payload.to_string(),
            },
        )
    }

    /// Record what an answer reveals to a person, before it leaves: one
    /// `PersonalDataRead` event (schema 2) for the whole request, naming the reader, the
    /// route, every customer and every field; in a stream of its own (`access-<id>`), so
    /// a page of ten thousand costs one event, and requests never wait on each other. No
    /// record, no personal data.
    pub(crate) async fn record_reads(
        &self,
        caller: &Caller,
        route: &str,
        read: Reads,
    ) -> Result<(), Problem> {
        let (Some(p), Some(events)) = (&caller.0, &self.security.events) else {
            return Ok(());
        };
        if read.customers.is_empty() || !p.is_person() {
            return Ok(());
        }
        let command_id = uuid::Uuid::now_v7();
        let request = AppendRequest::new(CommandMeta {
            command_id,
            command_type: "record_personal_data_read".into(),
            correlation_id: command_id,
            causation_id: None,
            actor: p.actor(),
            issued_at: Utc::now(),
            fingerprint: command_id.to_string(),
        })
        .write(
            format!("{}{command_id}", personal::ACCESS_LOG_PREFIX),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: personal::PERSONAL_DATA_READ.into(),
                schema_version: personal::PERSONAL_DATA_READ_VERSION,
                payload: serde_json::json!({
                    "reader": p.actor(),
                    "role": p.role.as_str(),
                    "route": route,
                    "customers": read.customers,
                    "fields": read.fields,
                }),
            }],
        );
        events.append(request).await.map(|_| ()).map_err(|e| {
            Problem::privacy(format!(
                "the read of personal data could not be recorded: {e}"
            ))
        })
    }
}

/// What one answer reveals: which customers, which of their personal fields.
#[derive(Default)]
pub(crate) struct Reads {
    customers: BTreeSet<String>,
    fields: BTreeSet<&'static str>,
}

impl Reads {
    fn add(&mut self, customer: &str, fields: impl IntoIterator<Item = &'static str>) {
        self.customers.insert(customer.to_string());
        self.fields.extend(fields);
    }
}

/// One line of a customer's timeline as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TimelineItem {
    #[serde(flatten)]
    pub(crate) row: TimelineRow,
    /// The event's payload as JSON text (fields in declared order; personal fields
    /// decrypted for the caller, `***` for analysts, `[erased]` after an erasure); `null`
    /// when the service runs without the event store.
    payload: Option<String>,
}
