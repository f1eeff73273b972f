//! `lane-api`: the backend seam, knowing no backend.
//!
//! [`Backend`] is what the CLI and the IDE daemon program against; the types that cross it, the
//! one error type and the typed ids live here too. This crate has no transport, no process code
//! and no backend in it (as `kube-core` is to `kube-client`): the local, Consul and Kubernetes
//! backends depend on it, never the other way round.

mod backend;
mod data;
mod error;
mod ids;
mod routing;
mod types;

pub use backend::{Backend, Cancel, ProgressTx, find_lane};
pub use data::data_env;
pub use error::{BackendError, Result};
pub use ids::{DeployId, InstanceId, Revision};
pub use routing::routing_table;
pub use types::*;
