//! The contract other services use: types generated from `proto/crm/v1/`, the mapping
//! between wire payloads and domain commands ([`wire`]), the event catalogue ([`events`]),
//! and the OpenAPI and AsyncAPI documents generated from the descriptors.
#![forbid(unsafe_code)]

/// `crm.v1` messages.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/crm.v1.rs"));
}

pub mod asyncapi;
pub mod events;
pub mod openapi;
pub mod options;
mod schema;
pub mod wire;

/// The descriptors of `proto/crm/v1/` (and what they import), as compiled.
pub fn descriptors() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> =
        std::sync::LazyLock::new(|| {
            prost_reflect::DescriptorPool::decode(
                include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin")).as_ref(),
            )
            .expect("the descriptors compiled by build.rs")
        });
    &POOL
}
