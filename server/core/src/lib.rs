//! `lane-core`: the lane model, names and routing decisions.
//!
//! **Architecture invariant:** this crate does no I/O, reads no clock and knows no protocol. Every
//! other crate converts to and from these types at its edge.

pub mod data;
pub mod duration;
pub mod follow;
pub mod header;
pub mod id;
pub mod kafka_url;
pub mod lane;
pub mod manifest;
pub mod naming;
pub mod routing;

pub use header::LaneValue;
pub use id::{IdError, LaneId, LaneRef, ServiceId};
pub use lane::{Lane, PersonalVersion};
pub use routing::{Decision, Endpoint, RoutingTable};
