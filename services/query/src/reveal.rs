//! Personal data on the way out: masked for analysts, decrypted for the others, and every
//! read by a person recorded in the event store before the answer leaves.

use chrono::Utc;
use crm_domain::customer::personal;
use crm_eventstore::{AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent};
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
        let mut read = Vec::new();
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
                read.push(row.customer_id.clone());
            }
            row.display_name = revealed;
        }
        self.record_reads(caller, route, &read).await
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
        let mut payloads = std::collections::HashMap::new();
        // Rows come newest first, all of one customer.
        if let (Some(events), Some(newest), Some(oldest)) =
            (&self.security.events, rows.first(), rows.last())
        {
            let stream = format!("customer-{}", newest.customer_id);
            let after = (oldest.version - 1).max(0) as u64;
            let page = events
                .read_stream_range(&stream, after, newest.version.max(0) as u64)
                .await
                .map_err(Problem::store)?;
            payloads.extend(page.into_iter().map(|e| (e.stream_version as i64, e)));
        }
        let mut read = Vec::new();
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
            let mut payload = event.payload;
            let vault = self.security.vault.as_ref().filter(|_| !caller.masked());
            match vault {
                Some(vault) => {
                    let opened = vault
                        .open(
                            &format!("customer-{}", row.customer_id),
                            &row.event_type,
                            &mut payload,
                        )
                        .await
                        .map_err(Problem::privacy)?;
                    if opened == crm_privacy::Opened::Revealed {
                        read.push(row.customer_id.clone());
                    }
                }
                None => {
                    let shown = if caller.masked() {
                        MASKED
                    } else {
                        personal::WITHHELD
                    };
                    for f in personal::fields(&row.event_type) {
                        if let Some(v) = payload.get_mut(*f) {
                            if v.as_str().is_some_and(crm_privacy::is_sealed) {
                                *v = serde_json::Value::String(shown.into());
                            }
                        }
                    }
                }
            }
            // The event's canonical text: its fields in declared order.
            let text = match crm_domain::CustomerEvent::decode(
                &row.event_type,
                event.schema_version,
                &payload,
            ) {
                Ok(e) => e.payload_text(),
                Err(_) => payload.to_string(),
            };
            items.push(TimelineItem {
                row,
                payload: Some(text),
            });
        }
        self.record_reads(caller, "timeline", &read).await?;
        Ok(items)
    }

    /// Append one `PersonalDataRead` record per customer to its `access-` stream before
    /// the answer leaves: no record, no personal data.
    pub(crate) async fn record_reads(
        &self,
        caller: &Caller,
        route: &str,
        customers: &[String],
    ) -> Result<(), Problem> {
        let (Some(p), Some(events)) = (&caller.0, &self.security.events) else {
            return Ok(());
        };
        if customers.is_empty() || !p.is_person() {
            return Ok(());
        }
        let command_id = uuid::Uuid::now_v7();
        let mut request = AppendRequest::new(CommandMeta {
            command_id,
            command_type: "record_personal_data_read".into(),
            correlation_id: command_id,
            causation_id: None,
            actor: p.actor(),
            issued_at: Utc::now(),
            fingerprint: command_id.to_string(),
        });
        let mut seen = std::collections::BTreeSet::new();
        for c in customers {
            if !seen.insert(c) {
                continue;
            }
            request = request.write(
                format!("{}{c}", personal::ACCESS_LOG_PREFIX),
                ExpectedVersion::Any,
                vec![NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: personal::PERSONAL_DATA_READ.into(),
                    schema_version: 1,
                    payload: serde_json::json!({
                        "customer_id": c,
                        "reader": p.actor(),
                        "role": p.role.as_str(),
                        "route": route,
                    }),
                }],
            );
        }
        events.append(request).await.map(|_| ()).map_err(|e| {
            Problem::privacy(format!(
                "the read of personal data could not be recorded: {e}"
            ))
        })
    }
}

/// One line of a customer's timeline as answered.
#[derive(Debug, Serialize)]
pub(crate) struct TimelineItem {
    #[serde(flatten)]
    pub(crate) row: TimelineRow,
    /// The event's payload as JSON text (fields in declared order); `null` when the
    /// service runs without the event store.
    payload: Option<String>,
}
