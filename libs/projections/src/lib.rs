//! The read side: read models built from the event log.
//!
//! - [`project`]: where each read model is decided: one event in, the read-model
//!   changes out (pure, shared by PostgreSQL and SQLite);
//! - [`store`]: where they are stored: applies batches exactly once, in per-stream order,
//!   in one transaction with the consumer's checkpoint;
//! - [`queries`]: what users ask of them.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod bulk;
pub mod facts;
pub mod funnel;
pub mod kpi;
pub mod project;
pub mod queries;
pub mod rebuild;
pub mod schema;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod views;

pub use project::{project, Arg, Changes, Poison, Stmt};
pub use queries::{
    CustomerFilter, CustomerRow, ManagerRow, PeriodRow, PortfolioBy, PortfolioCount, TimelineRow,
};
pub use schema::{Projection, PROJECTIONS};
pub use store::{ApplyReport, CheckpointRow, Fate, Prepared, ReadError, ReadStore, Target};
