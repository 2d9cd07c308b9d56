//! The read side: read models built from the event log.
//!
//! - [`project`]: where each read model is decided: one event in, typed
//!   [`change`]s out (pure);
//! - [`plan`]: which events of a batch each read model applies (pure);
//! - [`sql`]: the one place SQL text is made: changes, positions and DDL rendered for
//!   PostgreSQL or SQLite;
//! - [`store`]: where they are stored: applies batches exactly once, in per-stream order,
//!   in one transaction with the consumer's checkpoint;
//! - [`memory`] and [`rebuild`]: the same changes folded in memory, bulk-loaded
//!   ([`load`]) into fresh tables, verified against the live ones;
//! - [`queries`]: what users ask of them.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod calendar;
pub mod change;
pub mod facts;
pub mod funnel;
pub mod kept;
pub mod kpi;
pub mod ledger;
pub mod load;
pub mod memory;
pub mod plan;
pub mod project;
pub mod queries;
pub mod rebuild;
pub mod schema;
pub mod sql;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod views;

pub use change::{Change, Value};
pub use project::{project, Changes, Poison};
pub use queries::{
    CustomerFilter, CustomerRow, ManagerRow, PeriodRow, PortfolioBy, PortfolioCount, TimelineRow,
};
pub use schema::{Projection, PROJECTIONS};
pub use store::{ApplyReport, CheckpointRow, Fate, Prepared, ReadError, ReadStore, Target, Writer};
