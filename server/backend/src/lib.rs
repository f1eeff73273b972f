//! `lane-backend`: opens a backend by kind. The CLI and `lane lsp` both call [`open`]; it is the
//! only code that knows every backend crate, so the rest of the tools hold an
//! `Arc<dyn Backend>` and never name one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lane_api::{
    AssignRequest, Backend, BackendError, BaselineSync, Cancel, CreateLane, DeleteLane,
    DeployRequest, ExtendLane, GcReport, InstanceView, ProgressTx, Result, Revision, Status,
};
use lane_core::manifest::{BackendChoice, BackendKind};
use lane_core::{Lane, LaneRef};

pub use lane_api;
pub use lane_consul;
pub use lane_consul::Options as ConsulOptions;
pub use lane_kube::backend::Settings as ClusterSettings;
pub use lane_local as local;

/// What a backend needs to open, whichever it is.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The `lane` binary (the local backend starts `lane agent` from it).
    pub exe: PathBuf,
    /// The local backend's state dir; `None`: from the environment (`LANE_HOME`, XDG).
    pub state_dir: Option<PathBuf>,
    /// Never start anything on the way (a status pusher that must not bring up an agent).
    pub no_autostart: bool,
    /// The kubernetes backend's context and namespace (`[backend]` in `lane.toml`) and the
    /// service's app (the default namespace).
    pub cluster: ClusterSettings,
    /// The consul backend's `[backend] prefix`, `datacenter` and `namespace` (`lane.toml`); the
    /// rest comes from the environment (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, …).
    pub consul: ConsulOptions,
}

/// Where a backend choice came from, for error messages: `lane.toml:7:8`, `--backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody chose; the default.
    Default,
    /// The `--backend` flag (or `LANE_BACKEND`).
    Flag,
    /// `[backend] kind` in a `lane.toml`, at `file:line:column`.
    Manifest(String),
}

impl Origin {
    pub fn of(choice: &BackendChoice) -> Origin {
        match &choice.declared_at {
            Some(at) => Origin::Manifest(at.clone()),
            None => Origin::Default,
        }
    }
}

/// Opens the backend of `kind`; nothing is started or contacted on the way. The kubernetes and
/// consul backends contact their cluster or agent on first use (an unreachable one is then an
/// `unavailable` error naming it) and never start a local process; a consul setting that cannot
/// be right (`CONSUL_HTTP_ADDR` with another scheme, an unreadable `CONSUL_CACERT`) is an
/// invalid-input error that names the setting and where the backend was chosen.
pub fn open(kind: BackendKind, origin: &Origin, opts: OpenOptions) -> Result<Arc<dyn Backend>> {
    match kind {
        BackendKind::Local => Ok(Arc::new(open_local(opts)?)),
        BackendKind::Kubernetes => Ok(Arc::new(lane_kube::backend::KubernetesBackend::new(
            opts.cluster,
        ))),
        BackendKind::Consul => {
            let consul =
                lane_consul::ConsulBackend::open(&opts.consul).map_err(|e| chosen_at(e, origin))?;
            // Personal versions run under this machine's local supervisor. Without a state dir
            // for it (no HOME, no LANE_HOME) the lanes still work; deploy says why it cannot.
            let quiet = match open_local(OpenOptions {
                no_autostart: true,
                ..opts.clone()
            }) {
                Ok(q) => Arc::new(q) as Arc<dyn Backend>,
                Err(e) => {
                    return Ok(Arc::new(consul.without_runner(format!(
                        "lane cannot run versions on this machine: {}",
                        e.message
                    ))));
                }
            };
            let home = match &opts.state_dir {
                Some(d) => Some(d.clone()),
                None => lane_local::default_state_dir().ok(),
            };
            let local: Arc<dyn Backend> = if opts.no_autostart {
                quiet.clone()
            } else {
                Arc::new(open_local(opts)?)
            };
            Ok(Arc::new(consul.with_runner(lane_consul::backend::Runner {
                local,
                quiet,
                advertise: lane_consul::backend::Runner::advertise_from_env(),
                home,
            })))
        }
    }
}

/// The local backend itself, for the commands that only make sense on it (`lane agent`, `lane
/// down`, `lane router`).
pub fn open_local(opts: OpenOptions) -> Result<lane_local::LocalBackend> {
    let root = match opts.state_dir {
        Some(dir) => dir,
        None => lane_local::default_state_dir()?,
    };
    let backend = lane_local::LocalBackend::new(lane_local::StateDir::new(root), opts.exe);
    Ok(if opts.no_autostart {
        backend.without_autostart()
    } else {
        backend
    })
}

/// A backend that could not be opened: every call answers the error that opening gave. The IDE
/// daemon holds one instead of failing to start, so the status bar shows the error (with the
/// `lane.toml` position) and no command silently falls back to another backend.
pub struct Unopened {
    kind: BackendKind,
    error: BackendError,
}

impl Unopened {
    pub fn new(kind: BackendKind, error: BackendError) -> Self {
        Unopened { kind, error }
    }

    fn fail<T>(&self) -> Result<T> {
        Err(self.error.clone())
    }
}

#[async_trait]
impl Backend for Unopened {
    fn name(&self) -> &'static str {
        self.kind.as_str()
    }
    async fn status(&self) -> Result<Status> {
        self.fail()
    }
    async fn create_lane(&self, _: CreateLane) -> Result<Lane> {
        self.fail()
    }
    async fn delete_lane(&self, _: DeleteLane) -> Result<()> {
        self.fail()
    }
    async fn extend_lane(&self, _: ExtendLane) -> Result<Lane> {
        self.fail()
    }
    async fn deploy(&self, _: DeployRequest, _: ProgressTx, _: Cancel) -> Result<InstanceView> {
        self.fail()
    }
    async fn baseline_up(
        &self,
        _: Vec<DeployRequest>,
        _: ProgressTx,
        _: Cancel,
    ) -> Result<Vec<InstanceView>> {
        self.fail()
    }
    async fn baseline_sync(&self, _: ProgressTx, _: Cancel) -> Result<Vec<BaselineSync>> {
        self.fail()
    }
    async fn assign(&self, _: AssignRequest) -> Result<()> {
        self.fail()
    }
    async fn switch(&self, _: LaneRef) -> Result<()> {
        self.fail()
    }
    async fn gc(&self) -> Result<GcReport> {
        self.fail()
    }
    async fn wait_for_change(&self, _: Option<&Revision>, timeout: Duration) -> Result<Revision> {
        // A watcher would spin on an immediate error; nothing will change here, so wait it out.
        tokio::time::sleep(timeout).await;
        self.fail()
    }
}

/// An error opening a backend, with where it was chosen in front.
fn chosen_at(e: BackendError, origin: &Origin) -> BackendError {
    let message = match origin {
        Origin::Manifest(at) => format!("{at}: backend.kind = consul: {}", e.message),
        Origin::Flag => format!("--backend consul: {}", e.message),
        Origin::Default => e.message.clone(),
    };
    let help = e.help.clone();
    let err = BackendError::new(e.code, message);
    match help {
        Some(h) => err.with_help(h),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> OpenOptions {
        OpenOptions {
            exe: PathBuf::from("/nonexistent/lane"),
            state_dir: Some(std::env::temp_dir().join("lane-backend-open-test")),
            no_autostart: true,
            cluster: ClusterSettings::default(),
            consul: ConsulOptions::default(),
        }
    }

    #[test]
    fn consul_opens_without_contacting_anything() {
        let b = open(BackendKind::Consul, &Origin::Default, opts()).unwrap();
        assert_eq!(b.name(), "consul");
    }

    #[test]
    fn kubernetes_opens_without_contacting_anything() {
        let b = open(BackendKind::Kubernetes, &Origin::Default, opts()).unwrap();
        assert_eq!(b.name(), "kubernetes");
    }

    #[test]
    fn local_opens_without_starting_anything() {
        let b = open(BackendKind::Local, &Origin::Default, opts()).unwrap();
        assert_eq!(b.name(), "local");
    }
}
