//! `lane-consul`: the `consul` backend (scheme 1 of the design): lanes as documents in Consul KV
//! written with check-and-set, personal versions registered as `<prefix>-lane.<app>.<proc>`,
//! the baseline read from `<prefix>.<app>.<proc>`. [`client`] is a thin client of the parts of
//! Consul's HTTP API that `lane` uses (docs/consul.md says why it is not `consulrs` or
//! `rs-consul`).

pub mod backend;
pub mod client;
pub mod config;
pub mod keeper;
pub mod watch;

pub use backend::ConsulBackend;
pub use config::{Options, Settings};
