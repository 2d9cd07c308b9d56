//! The table of every command: its name, its message and its domain command.

use crm_domain::customer::*;
use crm_domain::manager::{
    DeactivateManager, ManagerCommand, ReactivateManager, RegisterManager, UpdateManager,
};
use crm_domain::policy::{PolicyCommand, PublishPolicy};
use crm_domain::{Command, CustomerCommand};

use super::{read_as, write_as, CommandWire, WirePublishPolicy};
use crate::v1;

/// Every command of the contract.
pub const COMMANDS: &[CommandWire] = &[
    CommandWire {
        name: "register_customer",
        read: |b, f| {
            read_as::<v1::RegisterCustomer, RegisterCustomer>(b, f, |x| {
                Command::Customer(CustomerCommand::Register(x))
            })
        },
        write: write_as::<v1::RegisterCustomer>,
    },
    CommandWire {
        name: "update_profile",
        read: |b, f| {
            read_as::<v1::UpdateProfile, UpdateProfile>(b, f, |x| {
                Command::Customer(CustomerCommand::UpdateProfile(x))
            })
        },
        write: write_as::<v1::UpdateProfile>,
    },
    CommandWire {
        name: "assign_owner",
        read: |b, f| {
            read_as::<v1::AssignOwner, AssignOwner>(b, f, |x| {
                Command::Customer(CustomerCommand::AssignOwner(x))
            })
        },
        write: write_as::<v1::AssignOwner>,
    },
    CommandWire {
        name: "transfer_owner",
        read: |b, f| {
            read_as::<v1::TransferOwner, TransferOwner>(b, f, |x| {
                Command::Customer(CustomerCommand::TransferOwner(x))
            })
        },
        write: write_as::<v1::TransferOwner>,
    },
    CommandWire {
        name: "release_to_pool",
        read: |b, f| {
            read_as::<v1::ReleaseToPool, ReleaseToPool>(b, f, |x| {
                Command::Customer(CustomerCommand::ReleaseToPool(x))
            })
        },
        write: write_as::<v1::ReleaseToPool>,
    },
    CommandWire {
        name: "claim_from_pool",
        read: |b, f| {
            read_as::<v1::ClaimFromPool, ClaimFromPool>(b, f, |x| {
                Command::Customer(CustomerCommand::ClaimFromPool(x))
            })
        },
        write: write_as::<v1::ClaimFromPool>,
    },
    CommandWire {
        name: "record_contact",
        read: |b, f| {
            read_as::<v1::RecordContact, RecordContact>(b, f, |x| {
                Command::Customer(CustomerCommand::RecordContact(x))
            })
        },
        write: write_as::<v1::RecordContact>,
    },
    CommandWire {
        name: "log_complaint",
        read: |b, f| {
            read_as::<v1::LogComplaint, LogComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::LogComplaint(x))
            })
        },
        write: write_as::<v1::LogComplaint>,
    },
    CommandWire {
        name: "acknowledge_complaint",
        read: |b, f| {
            read_as::<v1::AcknowledgeComplaint, AcknowledgeComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::AcknowledgeComplaint(x))
            })
        },
        write: write_as::<v1::AcknowledgeComplaint>,
    },
    CommandWire {
        name: "escalate_complaint",
        read: |b, f| {
            read_as::<v1::EscalateComplaint, EscalateComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::EscalateComplaint(x))
            })
        },
        write: write_as::<v1::EscalateComplaint>,
    },
    CommandWire {
        name: "resolve_complaint",
        read: |b, f| {
            read_as::<v1::ResolveComplaint, ResolveComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::ResolveComplaint(x))
            })
        },
        write: write_as::<v1::ResolveComplaint>,
    },
    CommandWire {
        name: "reopen_complaint",
        read: |b, f| {
            read_as::<v1::ReopenComplaint, ReopenComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::ReopenComplaint(x))
            })
        },
        write: write_as::<v1::ReopenComplaint>,
    },
    CommandWire {
        name: "close_complaint",
        read: |b, f| {
            read_as::<v1::CloseComplaint, CloseComplaint>(b, f, |x| {
                Command::Customer(CustomerCommand::CloseComplaint(x))
            })
        },
        write: write_as::<v1::CloseComplaint>,
    },
    CommandWire {
        name: "record_purchase",
        read: |b, f| {
            read_as::<v1::RecordPurchase, RecordPurchase>(b, f, |x| {
                Command::Customer(CustomerCommand::RecordPurchase(x))
            })
        },
        write: write_as::<v1::RecordPurchase>,
    },
    CommandWire {
        name: "record_referral",
        read: |b, f| {
            read_as::<v1::RecordReferral, RecordReferral>(b, f, |x| {
                Command::Customer(CustomerCommand::RecordReferral(x))
            })
        },
        write: write_as::<v1::RecordReferral>,
    },
    CommandWire {
        name: "change_lifecycle_stage",
        read: |b, f| {
            read_as::<v1::ChangeLifecycleStage, ChangeLifecycleStage>(b, f, |x| {
                Command::Customer(CustomerCommand::ChangeLifecycleStage(x))
            })
        },
        write: write_as::<v1::ChangeLifecycleStage>,
    },
    CommandWire {
        name: "assign_by_policy",
        read: |b, f| {
            read_as::<v1::AssignByPolicy, AssignByPolicy>(b, f, |x| {
                Command::Customer(CustomerCommand::AssignByPolicy(x))
            })
        },
        write: write_as::<v1::AssignByPolicy>,
    },
    CommandWire {
        name: "lock_ownership",
        read: |b, f| {
            read_as::<v1::LockOwnership, LockOwnership>(b, f, |x| {
                Command::Customer(CustomerCommand::LockOwnership(x))
            })
        },
        write: write_as::<v1::LockOwnership>,
    },
    CommandWire {
        name: "unlock_ownership",
        read: |b, f| {
            read_as::<v1::UnlockOwnership, UnlockOwnership>(b, f, |x| {
                Command::Customer(CustomerCommand::UnlockOwnership(x))
            })
        },
        write: write_as::<v1::UnlockOwnership>,
    },
    CommandWire {
        name: "erase_customer_data",
        read: |b, f| {
            read_as::<v1::EraseCustomerData, EraseCustomerData>(b, f, |x| {
                Command::Customer(CustomerCommand::EraseCustomerData(x))
            })
        },
        write: write_as::<v1::EraseCustomerData>,
    },
    CommandWire {
        name: "publish_policy",
        read: |b, f| {
            read_as::<v1::PublishPolicy, WirePublishPolicy>(b, f, |x| {
                Command::Policy(PolicyCommand::Publish(PublishPolicy {
                    document: x.document_json,
                    note: x.note,
                }))
            })
        },
        write: write_as::<v1::PublishPolicy>,
    },
    CommandWire {
        name: "register_manager",
        read: |b, f| {
            read_as::<v1::RegisterManager, RegisterManager>(b, f, |x| {
                Command::Manager(ManagerCommand::Register(x))
            })
        },
        write: write_as::<v1::RegisterManager>,
    },
    CommandWire {
        name: "update_manager",
        read: |b, f| {
            read_as::<v1::UpdateManager, UpdateManager>(b, f, |x| {
                Command::Manager(ManagerCommand::Update(x))
            })
        },
        write: write_as::<v1::UpdateManager>,
    },
    CommandWire {
        name: "deactivate_manager",
        read: |b, f| {
            read_as::<v1::DeactivateManager, DeactivateManager>(b, f, |x| {
                Command::Manager(ManagerCommand::Deactivate(x))
            })
        },
        write: write_as::<v1::DeactivateManager>,
    },
    CommandWire {
        name: "reactivate_manager",
        read: |b, f| {
            read_as::<v1::ReactivateManager, ReactivateManager>(b, f, |x| {
                Command::Manager(ManagerCommand::Reactivate(x))
            })
        },
        write: write_as::<v1::ReactivateManager>,
    },
];
