//! The local backend's state directory and its one state file.
//!
//! Layout of the state dir (`$LANE_HOME`, else `$XDG_STATE_HOME/lane`, else `~/.local/state/lane`):
//!
//! ```text
//! state.json    lanes, instances, active lane (written atomically: temp file + rename)
//! state.lock    flock held while reading-modifying-writing state.json
//! agent.lock    flock held by the running agent for its whole life (one agent per state dir)
//! agent.sock    the agent's control socket (HTTP/1.1 over a Unix socket)
//! agent.json    the running agent's pid and router address
//! agent.log     the agent's log
//! logs/         one log file per instance
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use lane_core::manifest::HealthCheck;
use lane_core::{Lane, LaneId, LaneRef, PersonalVersion, ServiceId};
use serde::{Deserialize, Serialize};

use lane_api::InstanceState;
use lane_api::{BackendError, Result};

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
    /// Working copies deploys build and run from (see `source.rs`).
    pub fn sources(&self) -> PathBuf {
        self.root.join("src")
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(self.logs()).map_err(|e| {
            BackendError::internal(format!(
                "cannot create the state dir {}: {e}",
                self.root.display()
            ))
            .with_help("set LANE_HOME to a writable directory")
        })
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
    /// Set while the deploy that made it is still running; such records are rolled back when the
    /// deploy fails, is cancelled, or the agent dies before it completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// The working copy it was built in and runs from, when the deploy took one (`src/…` in the
    /// state dir); `None` when it runs in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
}

/// The whole local state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub active_lane: Option<LaneId>,
    #[serde(default)]
    pub lanes: BTreeMap<LaneId, Lane>,
    /// Lanes that a still-running deploy created, by deploy id: removed again if it fails.
    #[serde(default)]
    pub created_by_deploy: BTreeMap<LaneId, String>,
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceRecord>,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub next_seq: u64,
}

impl State {
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
}
