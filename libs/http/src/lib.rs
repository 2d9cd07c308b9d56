//! HTTP plumbing every service shares, so each answers operators the same way:
//! readiness and liveness probes (`probes`), request metrics by route (`requests`), the
//! URI guard against control characters (`guard`), and the operations endpoint of the
//! services without an API (`ops`).
#![forbid(unsafe_code)]

pub mod guard;
pub mod ops;
pub mod probes;
pub mod requests;

pub use probes::{Heartbeat, Probes, ProbesBuilder};
