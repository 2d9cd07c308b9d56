//! Subject names. Events: `<prefix>.events.<aggregate>.<partition>.<id>.<EventType>`;
//! commands: `<prefix>.cmd.<command_name>`.
//!
//! The partition token (0..[`PARTITIONS`]) lets consumers split the load by customer
//! with one filter subject each (NATS 2.9 has no multi-filter consumers nor subject
//! partition mapping): every event of a customer carries the same partition, so a
//! consumer that owns a partition sees all of that customer's events, in order.

/// Number of partitions. Fixed for the life of a stream: changing it changes subjects.
pub const PARTITIONS: u32 = 16;

/// Subject builder for one deployment (`prefix` isolates test runs and tenants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("crm")
    }
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Wildcard covering every event subject.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Wildcard for one partition of one aggregate type.
    pub fn partition_events(&self, aggregate: &str, partition: u32) -> String {
        format!("{}.events.{aggregate}.{partition}.>", self.prefix)
    }

    /// Wildcard for one partition of every aggregate type (a projector's consumer).
    pub fn partition_filter(&self, partition: u32) -> String {
        format!("{}.events.*.{partition}.>", self.prefix)
    }

    /// Dead letters of projector `group`, partition `partition`.
    pub fn dead_letter(&self, group: &str, partition: u32) -> String {
        format!("{}.dlq.{group}.{partition}", self.prefix)
    }

    /// Wildcard covering every dead letter.
    pub fn all_dead_letters(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    /// Subject of an event of stream `stream_id` (`customer-<uuid>`).
    pub fn event(&self, stream_id: &str, event_type: &str) -> String {
        let (aggregate, id) = split_stream_id(stream_id);
        format!(
            "{}.events.{aggregate}.{}.{id}.{event_type}",
            self.prefix,
            partition_of(id)
        )
    }

    /// Request/reply subject of a command (`assign_owner`).
    pub fn command(&self, command_name: &str) -> String {
        format!("{}.cmd.{command_name}", self.prefix)
    }

    /// Durable-ingestion subject of a command (`<prefix>.intake.assign_owner`):
    /// published to the intake stream, decided at least once (`crate::intake`).
    pub fn intake(&self, command_name: &str) -> String {
        format!("{}.intake.{command_name}", self.prefix)
    }

    /// Every durable-ingestion subject.
    pub fn all_intake(&self) -> String {
        format!("{}.intake.*", self.prefix)
    }

    /// Subject of the outcome of the command `command_id` taken from the intake
    /// (`<prefix>.outcomes.<name>.<command id>`): one message per command.
    pub fn outcome(&self, command_name: &str, command_id: &str) -> String {
        format!("{}.outcomes.{command_name}.{command_id}", self.prefix)
    }

    /// Every outcome subject.
    pub fn all_outcomes(&self) -> String {
        format!("{}.outcomes.>", self.prefix)
    }

    /// Name of the NATS service exposing the commands.
    pub fn service_name(&self) -> String {
        format!("{}-commands", self.prefix.replace('.', "-"))
    }
}

/// The dead-letter stream the projectors create beside event stream `stream`.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}_DLQ")
}

/// `customer-1f..` → (`customer`, `1f..`). A stream id without a dash is its own id.
pub fn split_stream_id(stream_id: &str) -> (&str, &str) {
    stream_id.split_once('-').unwrap_or(("stream", stream_id))
}

/// Stable partition of an aggregate id (FNV-1a, so every language can compute it).
pub fn partition_of(id: &str) -> u32 {
    fnv1a32(id) % PARTITIONS
}

/// FNV-1a (32 bits) of an id's UTF-8 bytes.
pub fn fnv1a32(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subject_carries_aggregate_partition_id_and_type() {
        let s = Subjects::default();
        let id = "0b7e4c36-3a0f-4c1e-9a55-4f7c2b9f1d10";
        let subject = s.event(&format!("customer-{id}"), "OwnerAssigned");
        let p = partition_of(id);
        assert_eq!(
            subject,
            format!("crm.events.customer.{p}.{id}.OwnerAssigned")
        );
        assert!(p < PARTITIONS);
    }

    #[test]
    fn partitions_spread_ids() {
        let mut counts = [0u32; PARTITIONS as usize];
        for i in 0..1600u32 {
            counts[partition_of(&uuid_like(i)) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }

    fn uuid_like(i: u32) -> String {
        format!(
            "{i:08x}-0000-4000-8000-{:012x}",
            i.wrapping_mul(2_654_435_761)
        )
    }
}
