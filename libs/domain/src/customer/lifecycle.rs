//! Lifecycle stages a person may move a customer between (time-driven moves such as
//! dormancy are decided by the scheduler, later).

use crate::values::LifecycleStage::{self, *};
use crate::values::{ContactOutcome, Direction};

/// Allowed manual transitions.
pub fn allowed(from: LifecycleStage, to: LifecycleStage) -> bool {
    matches!(
        (from, to),
        (Lead, Contacted)
            | (Lead, Qualified)
            | (Contacted, Qualified)
            | (Qualified, Customer)
            | (Customer, Active)
            | (Active, Dormant)
            | (Dormant, Active)
            | (Dormant, Churned)
            | (Active, Churned)
            | (Churned, Active)
            | (Lead, Churned)
            | (Contacted, Churned)
            | (Qualified, Churned)
    )
}

/// A real exchange with the customer: inbound, or an outbound contact that reached them.
/// An unanswered call is not activity (it neither wakes a dormant customer nor keeps an
/// active one from going dormant).
pub fn is_engaged(direction: Direction, outcome: ContactOutcome) -> bool {
    direction == Direction::Inbound
        || matches!(
            outcome,
            ContactOutcome::Reached
                | ContactOutcome::Interested
                | ContactOutcome::CallbackRequested
        )
}

/// Coming back from dormant or churned to active.
pub fn is_reactivation(from: LifecycleStage, to: LifecycleStage) -> bool {
    matches!(from, Dormant | Churned) && to == Active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_funnel_moves_forward_and_dormancy_both_ways() {
        assert!(allowed(Lead, Contacted));
        assert!(allowed(Qualified, Customer));
        assert!(allowed(Active, Dormant) && allowed(Dormant, Active));
        assert!(!allowed(Customer, Lead));
        assert!(!allowed(Churned, Lead));
        assert!(!allowed(Lead, Active));
        assert!(is_reactivation(Dormant, Active) && is_reactivation(Churned, Active));
        assert!(!is_reactivation(Customer, Active));
    }
}
