//! The tools the `crm` CLI runs beside its own commands: the benchmarks (`crm bench …`,
//! [`bench::BenchCmd`]) and the load generator (`crm load`, [`load::LoadArgs`]). They
//! live apart from the CLI, so that a change to the CLI's own commands (demo, audit,
//! projections, policy, databases, NATS, tokens, contract) does not recompile them, and
//! so that those commands read without them.
#![forbid(unsafe_code)]

pub mod bench;
mod bench_analytics;
mod bench_audit;
mod bench_ceilings;
mod bench_intake;
mod bench_nats;
mod bench_queries;
mod bench_raw;
mod bench_read;
mod bench_replay;
mod bench_tokens;
pub mod load;
mod stats;
mod workload;
