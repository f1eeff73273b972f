//! The local backend: lanes and versions on this machine, no cluster.
//!
//! The [`LocalBackend`] client talks to one agent per state dir ([`run_agent`]), which it starts on
//! demand. The agent owns the state, supervises processes and runs the router.

mod agent;
mod client;
mod control;
mod history;
mod source;
pub mod store;
pub mod supervisor;

pub use agent::{
    AgentConfig, AgentInfo, HEADER_TO_BAGGAGE_ENV, env_switch, now_secs, parse_revision, revision,
    routing_table, run_agent,
};
pub use client::LocalBackend;
pub use store::{StateDir, default_state_dir};
