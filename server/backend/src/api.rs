//! The types that cross the backend seam: what the CLI and the IDE daemon ask of a backend and what
//! they get back. They are plain data (serde) so the local backend can send them between the
//! client and its agent, and the IDE daemon can convert them to its protocol at its edge.

use std::path::PathBuf;

use lane_core::manifest::Manifest;
use lane_core::{Lane, LaneId, LaneRef, PersonalVersion, ServiceId};
use serde::{Deserialize, Serialize};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Started, health not yet passed.
    Starting,
    /// Health check passes; receives traffic.
    Healthy,
    /// Was healthy, health check now fails; receives no traffic.
    Unhealthy,
    /// The process exited; waiting to be restarted.
    Crashed,
    /// Not running (the agent is stopped, or the instance is being removed).
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Healthy => "healthy",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Crashed => "crashed",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// One running (or supposed to be running) version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub service: ServiceId,
    pub lane: LaneRef,
    /// Where it listens, e.g. `127.0.0.1:41003`.
    pub addr: String,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub version: Option<PersonalVersion>,
    /// Its log file, when the backend keeps one locally.
    pub log: Option<PathBuf>,
    /// The working copy it was built in and runs from, when the backend keeps one locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
}

/// Requests counted by the router for one service in one lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub service: ServiceId,
    pub lane: LaneRef,
    pub requests: u64,
    /// Requests in the last minute.
    pub per_minute: u64,
}

/// A lane with its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneView {
    #[serde(flatten)]
    pub lane: Lane,
    /// The lane, its parent, …: where its requests fall back to before baseline.
    pub chain: Vec<LaneId>,
    pub instances: Vec<InstanceView>,
}

/// Everything `lane status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub backend: String,
    /// The router that serves this backend's lanes, e.g. `127.0.0.1:4080`.
    pub router: Option<String>,
    pub lane_header: String,
    pub active_lane: LaneRef,
    /// Seconds since the epoch, as the backend saw it.
    pub now: u64,
    pub lanes: Vec<LaneView>,
    pub baseline: Vec<InstanceView>,
    pub traffic: Vec<Traffic>,
    /// Grows with every change; watchers compare it.
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateLane {
    pub id: LaneId,
    pub parent: Option<LaneId>,
    pub ttl_secs: Option<u64>,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteLane {
    pub id: LaneId,
    pub actor: String,
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendLane {
    pub id: LaneId,
    pub by_secs: u64,
    pub actor: String,
    pub force: bool,
}

/// Deploy a personal version built from `repo` at `branch`/`commit` into `lane`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub lane: LaneRef,
    pub manifest: Manifest,
    pub repo: PathBuf,
    pub branch: String,
    pub commit: String,
    pub owner: String,
    /// When the lane does not exist yet: its TTL and parent.
    pub ttl_secs: Option<u64>,
    pub parent: Option<LaneId>,
    pub force: bool,
    /// Build and run from a copy of `repo`'s git working tree as it is now (uncommitted changes
    /// and untracked files included, ignored files not), so that later edits and branch switches
    /// in `repo` leave the deployed version as it was. `false`: build and run in `repo` itself
    /// (a baseline checkout, the demo's services).
    #[serde(default)]
    pub snapshot: bool,
}

/// Move the personal version of `service` from lane `from` to lane `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignRequest {
    pub service: ServiceId,
    pub from: LaneId,
    pub to: LaneId,
    pub actor: String,
    pub force: bool,
}

/// The deploy stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Build,
    Start,
    Health,
    Register,
    Route,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Build,
        Stage::Start,
        Stage::Health,
        Stage::Register,
        Stage::Route,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Start => "start",
            Stage::Health => "health",
            Stage::Register => "register",
            Stage::Route => "route",
        }
    }

    /// Percentage of the whole deploy reached when this stage starts.
    pub fn percent(self) -> u8 {
        match self {
            Stage::Build => 0,
            Stage::Start => 40,
            Stage::Health => 55,
            Stage::Register => 85,
            Stage::Route => 95,
        }
    }
}

/// A progress event of a long operation (deploy, baseline up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Stage {
        service: ServiceId,
        stage: Stage,
        percent: u8,
        message: String,
    },
    /// A line of build or service output.
    Log { service: ServiceId, line: String },
}

/// The error codes every backend reports; the CLI maps them to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidInput,
    NotFound,
    Conflict,
    NotOwner,
    BuildFailed,
    StartFailed,
    Unhealthy,
    Cancelled,
    Unavailable,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub lanes_removed: Vec<LaneId>,
    pub instances_removed: Vec<String>,
}
