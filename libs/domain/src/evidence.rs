//! Streams of evidence: what the platform records about its own use, never decided by
//! the domain and never projected, yet hash-chained, sealed, published and exported like
//! every stream, so an auditor can rely on them:
//!
//! - who read customers' personal data (`access-…`, event `PersonalDataRead`, written
//!   by the query service: [`crate::customer::personal`]);
//! - the results of chain verifications ([`VERIFICATION_STREAM`], event
//!   [`CHAIN_VERIFIED`], written by `crm audit verify`), which the workbench shows as
//!   "the last verification".

use crate::customer::personal::ACCESS_LOG_PREFIX;

/// The stream of verification results, oldest first (one stream: verifications are
/// rare, and the latest is its last event).
pub const VERIFICATION_STREAM: &str = "verification-chain";

/// The event type of a verification result.
pub const CHAIN_VERIFIED: &str = "ChainVerified";

/// Schema of [`CHAIN_VERIFIED`]: `ok`, `events`, `streams`, `checkpoints`,
/// `sealed_events`, `unsealed_events`, `head` (`{seq, hash}` or null), `problems`
/// (count), `first_problem` (text or null), `took_ms`.
pub const CHAIN_VERIFIED_VERSION: u32 = 1;

/// Whether `stream_id` holds evidence rather than domain events.
pub fn is_evidence(stream_id: &str) -> bool {
    stream_id.starts_with(ACCESS_LOG_PREFIX) || stream_id.starts_with("verification-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_records_and_verifications_are_evidence_and_nothing_else_is() {
        assert!(is_evidence("access-0190f0a0-0000-7000-8000-000000000000"));
        assert!(is_evidence(VERIFICATION_STREAM));
        for domain in ["customer-1", "manager-m1", "policy-pool"] {
            assert!(!is_evidence(domain), "{domain}");
        }
    }
}
