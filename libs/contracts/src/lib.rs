//! Types generated from `proto/crm/v1/`: the contract other services use.
#![forbid(unsafe_code)]

/// `crm.v1` messages.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/crm.v1.rs"));
}

/// The OpenAPI 3.1 document of the HTTP command API, generated from the proto files.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));
