//! The command side's application layer: where a command is handled (load, look up,
//! decide, append). Transport-free: the command service (HTTP, NATS) and the embedded
//! `crm` CLI both call [`CommandHandler::handle`].
#![forbid(unsafe_code)]

pub mod cache;
pub mod counters;
pub mod group_commit;
pub mod handler;
mod lookups;

pub use handler::{
    Accepted, AcceptedEvent, Command, CommandError, CommandHandler, Envelope, HandlerConfig,
};
