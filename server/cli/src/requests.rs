//! What the CLI (`commands`) and the IDE daemon (`lsp`) both ask of the backend, built the same
//! way for both: arguments parsed into ids and durations, the backend a directory's `lane.toml`
//! chooses, deploy requests and the developer's identity from the workspace (`lane-workspace`).
//! It imports neither of them.
//!
//! Everything here that runs git is either blocking and called off the async threads by the
//! daemon (`backends_for_folders`), or async and runs git in `spawn_blocking` itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lane_api::{Backend, BackendError, BuildFrom, DeployRequest, SourceRef};
use lane_backend::{ClusterSettings, ConsulOptions, OpenOptions, Origin};
use lane_core::duration::parse_duration;
use lane_core::manifest::BackendKind;
use lane_core::{LaneId, LaneRef};
use lane_workspace::{Workspace, WorkspaceError};

pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    BackendError::invalid(msg).into()
}

pub fn parse_lane(s: &str) -> anyhow::Result<LaneId> {
    s.parse::<LaneId>().map_err(|e| invalid(e.to_string()))
}

pub fn parse_lane_ref(s: &str) -> anyhow::Result<LaneRef> {
    s.parse::<LaneRef>().map_err(|e| invalid(e.to_string()))
}

pub fn parse_ttl(s: Option<&str>) -> anyhow::Result<Option<u64>> {
    s.map(|v| {
        parse_duration(v)
            .map(|d| d.as_secs())
            .map_err(|e| invalid(format!("--ttl: {e}")))
    })
    .transpose()
}

/// A workspace error as the backend's invalid-input error, with its help.
pub fn workspace_error(e: WorkspaceError) -> BackendError {
    let help = e.help();
    let err = BackendError::invalid(e.to_string());
    match help {
        Some(h) => err.with_help(h),
        None => err,
    }
}

/// An `anyhow` error as a [`BackendError`] (the one it wraps, else an internal error).
pub fn to_backend_error(e: anyhow::Error) -> BackendError {
    e.downcast::<BackendError>()
        .unwrap_or_else(|e| BackendError::internal(format!("{e:#}")))
}

/// Runs blocking work (git) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::internal(format!("a blocking task failed: {e}")))
}

/// The developer's identity as seen from `dir` (its repository's `user.email`, unless the user
/// config names an `owner`), read off the async threads.
pub async fn owner_in(dir: PathBuf) -> String {
    blocking(move || lane_workspace::owner(&dir))
        .await
        .unwrap_or_else(|_| "unknown".into())
}

pub fn open_options() -> anyhow::Result<OpenOptions> {
    Ok(OpenOptions {
        exe: std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the lane binary's own path: {e}"))?,
        state_dir: None,
        no_autostart: false,
        cluster: ClusterSettings::default(),
        consul: ConsulOptions::default(),
    })
}

/// The backend for a command run in `dir`: `--backend` when given, else the `[backend] kind` of
/// the service `dir` belongs to (its nearest `lane.toml`), else local. A broken `lane.toml` is
/// reported (file:line:column) rather than guessed around. Blocking (git).
pub fn backend_for(flag: Option<&str>, dir: &Path) -> anyhow::Result<Arc<dyn Backend>> {
    let (kind, origin, cluster, consul) = choose_backend(flag, dir)?;
    let opts = OpenOptions {
        cluster,
        consul,
        ..open_options()?
    };
    Ok(lane_backend::open(kind, &origin, opts)?)
}

/// The IDE daemon's backends for its workspace folders, and the folder that chose them: the
/// first folder that belongs to a service (else the first folder, else the current directory).
/// One backend starts the local agent when needed, the other never starts anything. One that
/// cannot be opened is an `Unopened` backend that answers every call with the reason. Blocking
/// (git).
pub fn backends_for_folders(
    flag: Option<&str>,
    folders: &[PathBuf],
) -> (PathBuf, Arc<dyn Backend>, Arc<dyn Backend>) {
    let here = folders
        .iter()
        .find(|f| lane_workspace::manifest_dir(f).is_some())
        .or(folders.first())
        .cloned()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let opened = (|| -> Result<_, BackendError> {
        let (kind, origin, cluster, consul) =
            choose_backend(flag, &here).map_err(to_backend_error)?;
        let opts = OpenOptions {
            cluster,
            consul,
            ..open_options().map_err(to_backend_error)?
        };
        let quiet = OpenOptions {
            no_autostart: true,
            ..opts.clone()
        };
        match lane_backend::open(kind, &origin, opts) {
            Ok(b) => Ok((b, lane_backend::open(kind, &origin, quiet)?)),
            Err(e) => Ok(unopened(kind, e)),
        }
    })();
    let (backend, quiet) = opened.unwrap_or_else(|e| unopened(BackendKind::Local, e));
    (here, backend, quiet)
}

/// A backend that answers every call with `e`.
pub fn unopened(kind: BackendKind, e: BackendError) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    tracing::warn!("cannot open the {kind} backend: {e}");
    let b: Arc<dyn Backend> = Arc::new(lane_backend::Unopened::new(kind, e));
    (b.clone(), b)
}

/// `--context` (or `LANE_CONTEXT`), set once by `main` for every backend this process opens.
static CONTEXT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Records `--context`; the kubernetes backend uses it over `[backend] context`.
pub fn set_context(context: Option<String>) {
    let _ = CONTEXT.set(context.filter(|c| !c.is_empty()));
}

/// Which backend a command in `dir` uses, who chose it, and the cluster and Consul settings of
/// the service `dir` belongs to (its `[backend]` context, namespace, prefix and datacenter, its
/// app).
fn choose_backend(
    flag: Option<&str>,
    dir: &Path,
) -> anyhow::Result<(BackendKind, Origin, ClusterSettings, ConsulOptions)> {
    // With --backend, a lane.toml that does not parse only loses its cluster settings: the flag
    // chooses without it.
    let manifest = match lane_workspace::manifest_dir(dir) {
        Some(service) => match (lane_workspace::load_manifest(&service), flag) {
            (Ok(m), _) => Some(m),
            (Err(_), Some(_)) => None,
            (Err(e), None) => return Err(workspace_error(e).into()),
        },
        None => None,
    };
    let cluster = manifest
        .as_ref()
        .map(|m| ClusterSettings {
            context: m.backend.context.clone(),
            namespace: m.backend.namespace.clone(),
            app: Some(m.service.app().to_owned()),
            data: m.data.clone(),
        })
        .unwrap_or_default();
    let consul = manifest
        .as_ref()
        .map(|m| ConsulOptions {
            prefix: m.backend.prefix.clone(),
            datacenter: m.backend.datacenter.clone(),
            namespace: m.backend.namespace.clone(),
        })
        .unwrap_or_default();
    let cluster = match CONTEXT.get().cloned().flatten() {
        Some(context) => ClusterSettings {
            context: Some(context),
            ..cluster
        },
        None => cluster,
    };
    Ok(match flag {
        Some(name) => (
            name.parse::<BackendKind>()
                .map_err(|e| invalid(format!("--backend: {e}")))?,
            Origin::Flag,
            cluster,
            consul,
        ),
        None => match manifest {
            Some(m) => (m.backend.kind, Origin::of(&m.backend), cluster, consul),
            None => (BackendKind::Local, Origin::Default, cluster, consul),
        },
    })
}

/// What `lane deploy` (and the IDE's deploy-current-branch) asks of the backend: the current
/// branch of the service `start` is in (see [`Workspace::discover`]), owned by the developer as
/// that repository knows them, into `lane` or else the active lane. git runs off the async
/// threads.
pub async fn deploy_request(
    backend: &dyn Backend,
    start: &Path,
    lane: Option<String>,
    parent: Option<String>,
    ttl: Option<String>,
    force: bool,
) -> anyhow::Result<DeployRequest> {
    let start = start.to_path_buf();
    let (ws, (branch, commit), owner) = blocking(move || {
        let ws = Workspace::discover(&start)?;
        let head = ws.repo.branch_and_commit()?;
        let owner = ws.owner();
        Ok::<_, WorkspaceError>((ws, head, owner))
    })
    .await?
    .map_err(workspace_error)?;
    let lane = match lane {
        Some(l) => LaneRef::Lane(parse_lane(&l)?),
        None => match backend.status().await?.active_lane {
            LaneRef::Baseline => {
                return Err(BackendError::invalid("no lane given and no active lane")
                    .with_help("pass --lane <id>, or `lane switch <id>` first")
                    .into());
            }
            l => l,
        },
    };
    let build_from = if ws.manifest.snapshot {
        BuildFrom::Snapshot
    } else {
        BuildFrom::InPlace
    };
    Ok(DeployRequest {
        lane,
        manifest: ws.manifest,
        source: SourceRef {
            dir: ws.service_dir,
            branch,
            commit,
            build_from,
            follow: None,
        },
        owner,
        ttl_secs: parse_ttl(ttl.as_deref())?,
        parent: parent.as_deref().map(parse_lane).transpose()?,
        force,
    })
}

/// The module boundaries this file exists for, checked on the sources.
#[cfg(test)]
mod tidy {
    use std::path::{Path, PathBuf};

    /// The non-test code of the `.rs` files in `dir` (everything before `#[cfg(test)]`).
    fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("a source dir") {
            let path = entry.expect("a dir entry").path();
            if path.is_dir() {
                found.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                found.push((path, code));
            }
        }
        found
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn commands_and_lsp_do_not_import_each_other() {
        for (path, code) in sources(&src().join("lsp")) {
            assert!(
                !code.contains("commands::"),
                "{} uses commands",
                path.display()
            );
        }
        let (_, commands) = sources(&src())
            .into_iter()
            .find(|(p, _)| p.ends_with("commands.rs"))
            .expect("commands.rs");
        assert!(!commands.contains("lsp::"), "commands.rs uses lsp");
        let (_, requests) = sources(&src())
            .into_iter()
            .find(|(p, _)| p.ends_with("requests.rs"))
            .expect("requests.rs");
        assert!(!requests.contains("commands::") && !requests.contains("lsp::"));
    }

    #[test]
    fn git_runs_only_through_lane_workspace() {
        let local = src().join("../../local/src");
        for (path, code) in sources(&src()).into_iter().chain(sources(&local)) {
            assert!(
                !code.contains("Command::new(\"git\")"),
                "{} runs git without lane_workspace::git",
                path.display()
            );
        }
    }
}
