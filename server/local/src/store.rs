//! The local backend's state directory and its one state file.
//!
//! Layout of the state dir (`$LANE_HOME`, else `$XDG_STATE_HOME/lane`, else `~/.local/state/lane`):
//!
//! ```text
//! state.json    lanes, instances, active lane, operations under way (written atomically:
//!               temp file + rename)
//! state.lock    flock held while reading-modifying-writing state.json
//! agent.lock    flock held by the running agent for its whole life (one agent per state dir)
//! agent.sock    the agent's control socket (HTTP/1.1 over a Unix socket)
//! agent.json    the running agent's pid and router address
//! agent.log     the agent's log
//! logs/         one log file per instance
//! src/          working copies (see `source.rs`)
//! ```
//!
//! The directory is owner-only (0700) and the socket too (0600), whatever the umask: the socket
//! runs any command a deploy carries, and `state.json` holds every command and environment.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use lane_core::manifest::HealthCheck;
use lane_core::{Lane, LaneId, LaneRef, PersonalVersion, ServiceId};
use serde::{Deserialize, Serialize};

use lane_api::{BackendError, Result};
use lane_api::{DeployId, InstanceState};

/// Resolves the state dir from the environment (see the module docs).
pub fn default_state_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("LANE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("lane"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/lane")),
        None => Err(BackendError::invalid(
            "cannot find a state directory: neither LANE_HOME, XDG_STATE_HOME nor HOME is set",
        )),
    }
}

/// Paths inside a state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: PathBuf) -> Self {
        StateDir { root }
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn state_lock(&self) -> PathBuf {
        self.root.join("state.lock")
    }
    pub fn agent_lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn agent_info(&self) -> PathBuf {
        self.root.join("agent.json")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Written by `lane agent install`: the command (run with `sh -c`) that has the supervisor
    /// start the agent, used instead of starting one detached.
    pub fn agent_supervisor(&self) -> PathBuf {
        self.root.join("agent.supervisor")
    }
    /// Per-lane histories (see `history.rs`).
    pub fn history(&self) -> PathBuf {
        self.root.join("history")
    }
    /// Working copies deploys build and run from (see `source.rs`).
    pub fn sources(&self) -> PathBuf {
        self.root.join("src")
    }

    /// Creates the state dir (owner-only, whatever the umask) with its `logs/`.
    pub fn create(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |e: std::io::Error| {
            BackendError::internal(format!(
                "cannot create the state dir {}: {e}",
                self.root.display()
            ))
            .with_help("set LANE_HOME to a writable directory")
        };
        fs::create_dir_all(self.logs()).map_err(fail)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(fail)
    }

    /// Takes the state lock (blocking) for a read-modify-write.
    pub fn lock(&self) -> Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.state_lock())
            .map_err(|e| io_err("open the state lock", &self.state_lock(), e))?;
        file.lock()
            .map_err(|e| io_err("lock", &self.state_lock(), e))?;
        Ok(file)
    }

    /// Reads the state file; a missing file is an empty state.
    pub fn load(&self) -> Result<State> {
        let path = self.state_file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                BackendError::internal(format!("{} is damaged: {e}", path.display())).with_help(
                    "move it aside to start from an empty state (lanes in it will be forgotten)",
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err("read", &path, e)),
        }
    }

    /// Writes the state atomically: a temp file in the same dir, fsync, rename.
    pub fn save(&self, state: &State) -> Result<()> {
        let path = self.state_file();
        let tmp = self
            .root
            .join(format!("state.json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| BackendError::internal(format!("cannot encode state: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("write", &path, e)
        })
    }
}

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError::internal(format!("cannot {what} {}: {e}", path.display()))
}

/// How to run an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Shell command, `{port}` already replaced.
    pub command: String,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub health: HealthCheck,
    pub health_timeout_ms: u64,
}

/// An instance the agent should keep running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub service: ServiceId,
    pub lane: LaneRef,
    pub port: u16,
    pub spec: RunSpec,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub version: Option<PersonalVersion>,
    /// Set while the deploy that made it has not gone live: the id of its [`Plan`] (which lists
    /// it in `started`). Not routed, not shown; undone with its plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<DeployId>,
    /// The working copy it was built in and runs from, when the deploy took one (`src/…` in the
    /// state dir); `None` when it runs in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// What it speaks (`protocol` in its `lane.toml`): the router talks to it in that protocol.
    #[serde(default)]
    pub protocol: lane_core::manifest::Protocol,
    /// The service's directory the version was built from (the developer's repository): where
    /// the merge check asks git about its branch. `None` for records older than the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
    /// The merge check saw its branch with work the merge target did not have. Only such a
    /// version can make its lane merged (a branch just made from the target, with nothing of its
    /// own yet, is not "merged").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub had_work: bool,
}

/// The whole local state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub active_lane: Option<LaneId>,
    #[serde(default)]
    pub lanes: BTreeMap<LaneId, Lane>,
    /// Written by agents before operations were plans (a lane a deploy under way created, by
    /// deploy id); read so that a new agent can still roll those back. Never written.
    #[serde(default, skip_serializing)]
    pub created_by_deploy: BTreeMap<LaneId, String>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceRecord>,
    /// Operations under way, by id (see [`Plan`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<DeployId, Plan>,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub next_seq: u64,
    /// Data provisioned for lanes (`lane-data`), with the bindings it was made for (their
    /// addresses are needed to remove it). Entries of lanes that are gone (`lane rm`, expiry, gc,
    /// an undone deploy) are torn down by the agent, then dropped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lane_data: BTreeMap<LaneId, Vec<ProvisionedData>>,
    /// Baseline services that follow production (`follow` in `lane-workspace.toml`), by service:
    /// what they follow, how to deploy them again, and where they stand.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub follows: BTreeMap<ServiceId, FollowRecord>,
    /// Lanes whose work is merged, reclaimed at their `reclaim_at` (see `agent/merged.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub merged: BTreeMap<LaneId, lane_api::Merged>,
}

/// A baseline service that follows a ref of its repository (see `agent/follow.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowRecord {
    /// The `follow` value, as written.
    pub follows: String,
    /// The `baseline up` request it came from: a roll-forward deploys it again with the new commit.
    pub request: lane_api::DeployRequest,
    /// The commit production is at (what the ref named when last read) and its name for people
    /// (`origin/main`, the tag picked).
    pub production: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production_name: Option<String>,
    /// The commit baseline runs.
    pub running: Option<String>,
    pub drift: lane_api::Drift,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<u64>,
    /// The commit whose roll-forward failed: not tried again on its own (a watch event), only by
    /// `lane baseline sync` or when the ref moves on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// One binding a lane has data for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedData {
    pub spec: lane_core::data::DataSpec,
    /// What the lane was given (as in its document's `data`).
    pub record: lane_core::lane::DataBinding,
}

/// An operation the agent has accepted and not yet carried out to the end, recorded in
/// `state.json` in the same atomic save as the first change it makes to the state, and removed
/// when its effects outside the state (processes, logs) are done. Whether a recorded plan is to be
/// finished or undone is in the plan itself, so an agent that finds one at start (its predecessor
/// died) knows what to do from `state.json` alone:
///
/// - [`PlanPhase::Prepare`] (only deploys): nothing it made is live. **Undo**: stop the instances
///   in `started` and drop their records (they are `pending` on this plan), and drop
///   `created_lane` unless an instance is in it.
/// - [`PlanPhase::Commit`]: its change to the state is saved. **Finish**: stop the processes of
///   the instances in `stop` (already out of `instances`) and delete their logs.
///
/// Every mutating operation is one plan (`baseline up` is one deploy plan per service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: PlanKind,
    pub phase: PlanPhase,
    /// When it was recorded (seconds since the epoch).
    pub since: u64,
    /// The lane it is about, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<LaneRef>,
    /// The service a deploy deploys, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceId>,
    /// Undo: the lane this deploy created (it did not exist when the deploy began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_lane: Option<LaneId>,
    /// Undo: the instances this deploy started that are not live (records `pending` on it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
    /// Finish: instances taken out of the state whose processes are still to be stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<Doomed>,
}

/// An instance whose process a plan stops: its id (its processes carry `LANE_INSTANCE=<id>`) and
/// its last known pid, for an agent that has to stop it without having started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doomed {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    Create,
    Deploy,
    Delete,
    Extend,
    Assign,
    Switch,
    Gc,
    /// A lane's TTL ran out (the agent's housekeeping, or `lane gc`).
    Expire,
    /// A lane's branches were merged and its grace period ran out (the agent's merge check).
    Merged,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Create => "create",
            PlanKind::Deploy => "deploy",
            PlanKind::Delete => "delete",
            PlanKind::Extend => "extend",
            PlanKind::Assign => "assign",
            PlanKind::Switch => "switch",
            PlanKind::Gc => "gc",
            PlanKind::Expire => "expire",
            PlanKind::Merged => "merged",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanPhase {
    /// Nothing it made is live yet: undone if it does not complete.
    Prepare,
    /// Its change is in the state: finished, whatever happens to its client or the agent.
    Commit,
}

impl Plan {
    pub fn new(kind: PlanKind, phase: PlanPhase, since: u64) -> Self {
        Plan {
            kind,
            phase,
            since,
            lane: None,
            service: None,
            created_lane: None,
            started: Vec::new(),
            stop: Vec::new(),
        }
    }
}

impl State {
    /// Takes the instances `ids` out of the state for a plan to stop: their records go, and so do
    /// the mentions other plans make of them (a deploy under way forgets an instance that a `lane
    /// rm` now stops), so that each instance is in exactly one place.
    pub fn take_instances(&mut self, ids: &[String]) -> Vec<Doomed> {
        let mut doomed = Vec::new();
        for id in ids {
            if let Some(rec) = self.instances.remove(id) {
                doomed.push(Doomed {
                    id: rec.id,
                    pid: rec.pid,
                });
            }
        }
        for plan in self.plans.values_mut() {
            plan.started.retain(|s| !ids.contains(s));
        }
        doomed
    }

    pub fn instances_of<'a>(
        &'a self,
        service: &'a ServiceId,
        lane: &'a LaneRef,
    ) -> impl Iterator<Item = &'a InstanceRecord> + 'a {
        self.instances
            .values()
            .filter(move |i| &i.service == service && &i.lane == lane)
    }

    /// Lanes whose parent is `id`.
    pub fn children(&self, id: &LaneId) -> Vec<LaneId> {
        self.lanes
            .values()
            .filter(|l| l.parent.as_ref() == Some(id))
            .map(|l| l.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_save() {
        let dir = std::env::temp_dir().join(format!("lane-store-test-{}", std::process::id()));
        let sd = StateDir::new(dir.clone());
        sd.create().unwrap();
        assert_eq!(sd.load().unwrap(), State::default());
        let mut state = State::default();
        let id: LaneId = "x".parse().unwrap();
        state.lanes.insert(
            id.clone(),
            Lane::new(id, None, "me", 1, lane_core::lane::DEFAULT_TTL),
        );
        state.generation = 3;
        {
            let _lock = sd.lock().unwrap();
            sd.save(&state).unwrap();
        }
        assert_eq!(sd.load().unwrap(), state);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::write(sd.state_file(), b"{ not json").unwrap();
        let err = sd.load().unwrap_err();
        assert!(err.message.contains("is damaged"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    fn record(id: &str, lane: &str, pending: Option<&str>) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            service: "demo.b".parse().unwrap(),
            lane: lane.parse().unwrap(),
            port: 1,
            spec: RunSpec {
                command: "true".into(),
                cwd: PathBuf::from("/"),
                env: BTreeMap::new(),
                health: HealthCheck::Tcp,
                health_timeout_ms: 1,
            },
            state: InstanceState::Healthy,
            pid: Some(42),
            restarts: 0,
            version: None,
            pending: pending.map(DeployId::from),
            source: None,
            protocol: Default::default(),
            repo: None,
            had_work: false,
        }
    }

    #[test]
    fn plans_round_trip_and_a_legacy_field_is_read_not_written() {
        let mut state = State::default();
        let mut plan = Plan::new(PlanKind::Deploy, PlanPhase::Prepare, 7);
        plan.created_lane = Some("x".parse().unwrap());
        plan.started = vec!["x/demo.b#3".into()];
        plan.stop = vec![Doomed {
            id: "x/demo.b#1".into(),
            pid: Some(9),
        }];
        state.plans.insert(DeployId::from("deploy-4"), plan);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""phase":"prepare""#), "{json}");
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);

        // A state file from before plans: a deploy under way recorded its lane here.
        let old = r#"{"created_by_deploy":{"x":"d3-77"},"instances":{}}"#;
        let old: State = serde_json::from_str(old).unwrap();
        assert_eq!(old.created_by_deploy.len(), 1);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("created_by_deploy"), "{json}");
        assert!(!json.contains("plans"), "no plans, no field: {json}");
    }

    #[test]
    fn taking_instances_out_takes_them_out_of_every_plan_too() {
        let mut state = State::default();
        let op = DeployId::from("deploy-1");
        state.instances.insert(
            "x/demo.b#2".into(),
            record("x/demo.b#2", "x", Some("deploy-1")),
        );
        state
            .instances
            .insert("y/demo.b#3".into(), record("y/demo.b#3", "y", None));
        let mut plan = Plan::new(PlanKind::Deploy, PlanPhase::Prepare, 1);
        plan.started = vec!["x/demo.b#2".into()];
        state.plans.insert(op.clone(), plan);

        let doomed = state.take_instances(&["x/demo.b#2".into(), "nope".into()]);
        assert_eq!(
            doomed,
            [Doomed {
                id: "x/demo.b#2".into(),
                pid: Some(42)
            }]
        );
        assert!(state.plans[&op].started.is_empty());
        assert_eq!(state.instances.len(), 1);
    }
}
