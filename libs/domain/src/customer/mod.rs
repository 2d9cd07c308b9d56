//! The customer aggregate (stream `customer-<id>`): profile, ownership, contacts,
//! complaints, purchases, referrals and lifecycle.

pub mod commands;
pub mod complaint;
pub mod decide;
pub mod events;
pub mod lifecycle;
pub mod personal;
pub mod state;
pub mod timers;

pub use commands::*;
pub use complaint::{ComplaintState, ComplaintStatus, SlaPolicy};
pub use decide::decide;
pub use events::*;
pub use state::{evolve, Customer, CustomerState, ReferralState};
