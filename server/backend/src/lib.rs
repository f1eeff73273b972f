//! `lane-backend`: the seam between the lane tools and where lanes live.
//!
//! [`Backend`] is what the CLI and the IDE daemon program against. [`local`] is the embedded
//! default; the Consul and Kubernetes backends slot in behind the same trait.

pub mod api;
pub mod backend;
pub mod error;
pub mod local;

pub use backend::{Backend, ProgressTx};
pub use error::{BackendError, Result};
