//! The types that cross the backend seam: what the CLI and the IDE daemon ask of a backend and what
//! they get back. They are plain data (serde) so a backend can send them over its own transport
//! (the local client to its agent), and the IDE daemon can convert them to its protocol at its
//! edge. Nothing here is specific to one backend: where an instance runs is a [`Placement`].

use std::net::SocketAddr;
use std::path::PathBuf;

use lane_core::manifest::Manifest;
use lane_core::{Lane, LaneId, LaneRef, PersonalVersion, ServiceId};
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, Revision};

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

/// Where an instance runs, in the terms of the backend that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// A process on this machine (the local backend).
    Process {
        /// Where it listens, e.g. `127.0.0.1:41003`.
        addr: SocketAddr,
        pid: Option<u32>,
        /// Its log file.
        log: Option<PathBuf>,
        /// The working copy it was built in and runs from (`None`: it runs in place).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<PathBuf>,
    },
    /// A pod of a Kubernetes Deployment.
    Pod {
        namespace: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<std::net::IpAddr>,
    },
    /// An address registered in a service registry (Consul), reached pod to pod.
    Registered {
        /// `host:port` as registered.
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
}

impl Placement {
    /// Where requests reach it, for people: `127.0.0.1:41003`, `ns/pod`, `10.0.0.7:8080`.
    pub fn endpoint(&self) -> String {
        match self {
            Placement::Process { addr, .. } => addr.to_string(),
            Placement::Pod {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
            Placement::Registered { address, .. } => address.clone(),
        }
    }

    /// The local process's pid, when it is one and runs.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Placement::Process { pid, .. } => *pid,
            _ => None,
        }
    }

    /// The log file on this machine, when there is one.
    pub fn log(&self) -> Option<&PathBuf> {
        match self {
            Placement::Process { log, .. } => log.as_ref(),
            _ => None,
        }
    }

    /// The local working copy it runs from, when there is one.
    pub fn source(&self) -> Option<&PathBuf> {
        match self {
            Placement::Process { source, .. } => source.as_ref(),
            _ => None,
        }
    }
}

/// One running (or supposed to be running) version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: InstanceId,
    pub service: ServiceId,
    pub lane: LaneRef,
    pub placement: Placement,
    pub state: InstanceState,
    pub restarts: u32,
    pub version: Option<PersonalVersion>,
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
    /// Set when every version's branch is merged into what baseline follows (or deleted with its
    /// commit in it): the lane ends with its branch (local backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// A lane whose work is merged: when that was found, why, and when it is reclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// Seconds since the Unix epoch when the backend found the lane merged.
    pub since: u64,
    /// Seconds since the Unix epoch when it is reclaimed; `None` once `lane extend` kept it (it
    /// then lives until its TTL runs out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_at: Option<u64>,
    /// The ref its branches were merged into, e.g. `main`, `origin/main`.
    pub target: String,
    /// Each branch and how it was merged, e.g. `demo.b: feature-x into main (fast-forward or
    /// merge commit)`.
    pub reason: String,
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
    /// For each baseline service that follows production: what production runs, what baseline
    /// runs, and any drift. Empty when nothing follows production.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_sync: Vec<BaselineSync>,
    pub traffic: Vec<Traffic>,
    /// Changes with every change; watchers hand it back to `wait_for_change`.
    pub revision: Revision,
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

/// How the version is built from the service's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildFrom {
    /// From a copy of the git working tree as it is at deploy time (uncommitted changes and
    /// untracked files included, ignored files not), so later edits and branch switches leave the
    /// deployed version as it was.
    #[default]
    Snapshot,
    /// In the directory itself (a baseline checkout, the demo's services).
    InPlace,
}

/// The source a version is built from: a service's directory in a git repository, at a branch
/// and commit as the client read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The service's directory (its `lane.toml` is there); a monorepo's service is a
    /// subdirectory of the repository.
    pub dir: PathBuf,
    pub branch: String,
    pub commit: String,
    pub build_from: BuildFrom,
    /// A baseline service that follows production (`follow` in `lane-workspace.toml`): the ref or
    /// release tag pattern of its repository. The backend builds the commit it names (not the
    /// checkout's working tree) and rolls baseline forward when it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<String>,
}

/// Deploy a personal version of `manifest`'s service, built from `source`, into `lane`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub lane: LaneRef,
    pub manifest: Manifest,
    pub source: SourceRef,
    pub owner: String,
    /// When the lane does not exist yet: its TTL and parent.
    pub ttl_secs: Option<u64>,
    pub parent: Option<LaneId>,
    pub force: bool,
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
    pub instances_removed: Vec<InstanceId>,
}

/// What happened to a lane, as one entry of its history (`lane history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneEvent {
    Create,
    Deploy,
    Assign,
    Switch,
    Extend,
    Delete,
    Reclaim,
}

/// One change to a lane: when, what, whose lane, who did it (when the request says), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub lane: LaneId,
    pub event: LaneEvent,
    /// The lane's owner at the time.
    pub owner: String,
    /// Who asked for the change; `None` for what the backend did on its own (a reclaim) or a
    /// request that names nobody (a switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceId>,
    /// Why, in words: what was deployed, moved, extended, and why a lane was reclaimed.
    pub reason: String,
}

/// How a baseline service stands against what production runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    /// Baseline runs what production runs.
    InSync,
    /// Production moved and baseline has not caught up yet (a roll-forward is due or under way).
    Behind,
    /// The roll-forward failed to build or start; the previous version keeps serving.
    BuildFailed,
    /// Baseline runs production's version but it is not healthy.
    Unhealthy,
    /// What production runs cannot be read right now (a ref that does not resolve, a namespace
    /// that cannot be listed).
    Unknown,
}

impl Drift {
    pub fn as_str(self) -> &'static str {
        match self {
            Drift::InSync => "in_sync",
            Drift::Behind => "behind",
            Drift::BuildFailed => "build_failed",
            Drift::Unhealthy => "unhealthy",
            Drift::Unknown => "unknown",
        }
    }
}

/// One baseline service that follows production: the backend's answer to "is baseline what
/// production runs?". The local backend follows a git ref of the service's repository (versions
/// are commits); the Kubernetes operator follows a production namespace (versions are images).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineSync {
    pub service: ServiceId,
    /// What is followed, in the backend's words: `origin/main`, `refs/tags/v*`,
    /// `namespace prod`.
    pub follows: String,
    /// Production's version (a commit, an image); `None` when it cannot be read.
    pub production: Option<String>,
    /// The version baseline runs now; `None` when baseline runs nothing yet.
    pub running: Option<String>,
    pub drift: Drift,
    /// Why, when not in sync: the build error's tail, the ref that does not resolve, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds since the Unix epoch of the last time baseline was brought to production's
    /// version (or found equal to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<u64>,
}
