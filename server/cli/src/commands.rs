//! What each command does. Every command goes through the [`Backend`] trait; only `agent`,
//! `down` and `router` know they are talking to the local backend.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use lane_api::{
    AssignRequest, BuildFrom, CreateLane, DeleteLane, DeployRequest, ExtendLane, Progress,
    SourceRef,
};
use lane_api::{Backend, BackendError, Cancel};
use lane_backend::{OpenOptions, Origin};
use lane_core::duration::parse_duration;
use lane_core::manifest::{BackendKind, MANIFEST_FILE, Manifest, WORKSPACE_FILE, Workspace};
use lane_core::{LaneId, LaneRef, ServiceId};
use lane_local::{AgentConfig, LocalBackend, StateDir, default_state_dir, run_agent};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cli::{BaselineCommand, Cli, Command};
use crate::output::{self, ProgressView};
use crate::{demo, git, sample, trace};

/// Runs a command and returns the process exit code; prints errors with their help.
pub async fn run(cli: Cli) -> u8 {
    match dispatch(cli.backend, cli.command).await {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            exit_code(&e)
        }
    }
}

pub fn report(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
    if let Some(help) = e
        .downcast_ref::<BackendError>()
        .and_then(|b| b.help.as_deref())
    {
        eprintln!("help: {help}");
    }
}

pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<BackendError>()
        .map_or(1, |b| u8::try_from(b.exit_code()).unwrap_or(1))
}

/// The local backend on the state dir from the environment (for the commands that only exist
/// for it: `agent`, `down`, `router`).
pub fn local_backend() -> anyhow::Result<LocalBackend> {
    Ok(lane_backend::open_local(open_options()?)?)
}

pub fn open_options() -> anyhow::Result<OpenOptions> {
    Ok(OpenOptions {
        exe: std::env::current_exe().context("cannot find the lane binary's own path")?,
        state_dir: None,
        no_autostart: false,
    })
}

/// The backend for a command run in `dir`: `--backend` when given, else the `[backend] kind` of
/// the service `dir` belongs to (its nearest `lane.toml`), else local. A broken `lane.toml` is
/// reported (file:line:column) rather than guessed around.
pub fn backend_for(flag: Option<&str>, dir: &Path) -> anyhow::Result<Arc<dyn Backend>> {
    let (kind, origin) = choose_backend(flag, dir)?;
    Ok(lane_backend::open(kind, &origin, open_options()?)?)
}

/// The IDE daemon's backends for its workspace folders (the first folder's service chooses),
/// one that starts the local agent when needed and one that never starts anything. One that
/// cannot be opened is an `Unopened` backend that answers every call with the reason.
pub fn backends_for_folders(
    flag: Option<&str>,
    folders: &[PathBuf],
) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    let here = folders
        .iter()
        .find(|f| manifest_dir(f).is_some())
        .or(folders.first())
        .cloned()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let opened = (|| -> Result<_, BackendError> {
        let (kind, origin) = choose_backend(flag, &here).map_err(to_backend_error)?;
        let opts = open_options().map_err(to_backend_error)?;
        let quiet = OpenOptions {
            no_autostart: true,
            ..opts.clone()
        };
        match lane_backend::open(kind, &origin, opts) {
            Ok(b) => Ok((b, lane_backend::open(kind, &origin, quiet)?)),
            Err(e) => Ok(unopened(kind, e)),
        }
    })();
    opened.unwrap_or_else(|e| unopened(BackendKind::Local, e))
}

fn unopened(kind: BackendKind, e: BackendError) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    tracing::warn!("cannot open the {kind} backend: {e}");
    let b: Arc<dyn Backend> = Arc::new(lane_backend::Unopened::new(kind, e));
    (b.clone(), b)
}

fn to_backend_error(e: anyhow::Error) -> BackendError {
    e.downcast::<BackendError>()
        .unwrap_or_else(|e| BackendError::internal(format!("{e:#}")))
}

/// Which backend a command in `dir` uses, and who chose it.
fn choose_backend(flag: Option<&str>, dir: &Path) -> anyhow::Result<(BackendKind, Origin)> {
    Ok(match flag {
        Some(name) => (
            name.parse::<BackendKind>()
                .map_err(|e| invalid(format!("--backend: {e}")))?,
            Origin::Flag,
        ),
        None => match manifest_dir(dir) {
            Some(service) => {
                let m = load_manifest(&service)?;
                (m.backend.kind, Origin::of(&m.backend))
            }
            None => (BackendKind::Local, Origin::Default),
        },
    })
}

/// The directory of the `lane.toml` that `dir` belongs to: the nearest one up to the repository
/// root (or `dir` itself outside a repository).
fn manifest_dir(dir: &Path) -> Option<PathBuf> {
    match git::repo_root(dir) {
        Ok(root) => service_dir(dir, &root),
        Err(_) => dir.join(MANIFEST_FILE).is_file().then(|| dir.to_path_buf()),
    }
}

fn invalid(msg: impl Into<String>) -> anyhow::Error {
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

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The service directory for `start` inside the repository at `root`: the nearest directory from
/// `start` up to `root` with a `lane.toml` (the repository root, or a service's directory in a
/// monorepo).
pub fn service_dir(start: &Path, root: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    start
        .ancestors()
        .take_while(|d| d.starts_with(&root))
        .find(|d| d.join(MANIFEST_FILE).is_file())
        .map(Path::to_path_buf)
}

/// Reads and validates `lane.toml` in `dir`.
pub fn load_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BackendError::invalid(format!("cannot read {}: {e}", path.display())).with_help(
            "a service repo needs a lane.toml at its root; see the README's lane.toml reference",
        )
    })?;
    Manifest::parse(&path, &text).map_err(|e| BackendError::invalid(e.to_string()).into())
}

async fn dispatch(backend: Option<String>, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Agent => {
            let dir = StateDir::new(default_state_dir()?);
            let result = async { run_agent(dir.clone(), AgentConfig::from_env()?).await }.await;
            if let Err(e) = &result {
                let text = match &e.help {
                    Some(h) => format!("{}\nhelp: {h}", e.message),
                    None => e.message.clone(),
                };
                let _ = std::fs::write(dir.root.join("agent.error"), text);
            }
            result?;
            Ok(0)
        }
        Command::SampleService {
            name,
            app,
            port,
            next,
            router,
            drop_lane_header,
            lane_header,
        } => {
            sample::run(sample::SampleArgs {
                name,
                app,
                port,
                next,
                router,
                drop_lane_header,
                lane_header,
            })
            .await?;
            Ok(0)
        }
        Command::Demo => demo::run().await,
        Command::Down => {
            let backend = local_backend()?.without_autostart();
            if backend.down().await? {
                println!("stopped the lane agent and everything it ran");
            } else {
                println!("no lane agent was running");
            }
            Ok(0)
        }
        Command::Router { listen } => {
            standalone_router(listen).await?;
            Ok(0)
        }
        Command::Lsp { describe } => crate::lsp::run(describe, backend).await,
        other => {
            // `lane deploy --dir D` chooses by D's lane.toml, everything else by the current dir.
            let here = match &other {
                Command::Deploy { dir: Some(d), .. } => d.clone(),
                _ => std::env::current_dir()?,
            };
            let backend = backend_for(backend.as_deref(), &here)?;
            run_with(backend.as_ref(), other).await
        }
    }
}

/// Commands that only need a [`Backend`].
pub async fn run_with(backend: &dyn Backend, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Status(f) => status(backend, f.json).await,
        Command::Ls(f) => {
            let st = backend.status().await?;
            if f.json {
                print_json(&st.lanes)?;
            } else {
                output::lanes(&st);
            }
            Ok(0)
        }
        Command::Create {
            lane,
            parent,
            ttl,
            json,
        } => {
            let req = CreateLane {
                id: parse_lane(&lane)?,
                parent: parent.as_deref().map(parse_lane).transpose()?,
                ttl_secs: parse_ttl(ttl.as_deref())?,
                owner: git::owner(),
            };
            let lane = backend.create_lane(req).await?;
            if json.json {
                print_json(&lane)?;
            } else {
                println!(
                    "created lane {} (owner {}, expires in {})",
                    lane.id,
                    lane.owner,
                    output::remaining(lane.expires.saturating_sub(lane.created))
                );
            }
            Ok(0)
        }
        Command::Rm { lane, force } => {
            let id = parse_lane(&lane)?;
            backend
                .delete_lane(DeleteLane {
                    id: id.clone(),
                    actor: git::owner(),
                    force,
                })
                .await?;
            println!("deleted lane {id} with its versions and routes");
            Ok(0)
        }
        Command::Extend { lane, by, force } => {
            let by = parse_duration(&by).map_err(|e| invalid(format!("--by: {e}")))?;
            let lane = backend
                .extend_lane(ExtendLane {
                    id: parse_lane(&lane)?,
                    by_secs: by.as_secs(),
                    actor: git::owner(),
                    force,
                })
                .await?;
            let now = lane_local::now_secs();
            println!(
                "lane {} now expires in {}",
                lane.id,
                output::remaining(lane.expires.saturating_sub(now))
            );
            Ok(0)
        }
        Command::Deploy {
            lane,
            parent,
            ttl,
            force,
            dir,
            json,
        } => deploy(backend, lane, parent, ttl, force, dir, json.json).await,
        Command::Switch { lane } => {
            let lane = parse_lane_ref(&lane)?;
            backend.switch(lane.clone()).await?;
            match lane {
                LaneRef::Baseline => println!("your requests now go to baseline"),
                LaneRef::Lane(id) => {
                    println!("your requests now enter lane {id} (via `lane proxy`)")
                }
            }
            Ok(0)
        }
        Command::Proxy { listen, lane } => proxy(backend, listen, lane).await,
        Command::Assign {
            service,
            from,
            to,
            force,
        } => {
            let service: ServiceId = service
                .parse()
                .map_err(|e: lane_core::IdError| invalid(e.to_string()))?;
            let (from, to) = (parse_lane(&from)?, parse_lane(&to)?);
            backend
                .assign(AssignRequest {
                    service: service.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    actor: git::owner(),
                    force,
                })
                .await?;
            println!("moved {service} from lane {from} to lane {to}");
            Ok(0)
        }
        Command::Trace { target, lane, json } => {
            trace::run(backend, &target, lane.as_deref(), json.json).await
        }
        Command::Gc(f) => {
            let report = backend.gc().await?;
            if f.json {
                print_json(&report)?;
            } else if report.lanes_removed.is_empty() && report.instances_removed.is_empty() {
                println!("nothing to reclaim");
            } else {
                for l in &report.lanes_removed {
                    println!("reclaimed expired lane {l}");
                }
                for i in &report.instances_removed {
                    println!("removed instance {i}");
                }
            }
            Ok(0)
        }
        Command::Baseline {
            command: BaselineCommand::Up { file },
        } => baseline_up(backend, file).await,
        Command::Agent
        | Command::Down
        | Command::Demo
        | Command::Router { .. }
        | Command::Lsp { .. }
        | Command::SampleService { .. } => Err(anyhow!("this command does not take a backend")),
    }
}

/// The workspace's service (if the current dir has a lane.toml) and its git state.
fn workspace_info() -> Option<serde_json::Value> {
    let cwd = std::env::current_dir().ok()?;
    let repo = git::repo_root(&cwd).ok();
    // The service's directory: the repository's root, or a monorepo service's directory.
    let root = match &repo {
        Some(repo) => service_dir(&cwd, repo).unwrap_or_else(|| repo.clone()),
        None => cwd,
    };
    let manifest = load_manifest(&root).ok();
    let (branch, commit) = git::head(&root).ok().unzip();
    Some(serde_json::json!({
        "root": root,
        "repo": repo,
        "service": manifest.map(|m| m.service.to_string()),
        "branch": branch,
        "commit": commit,
    }))
}

async fn status(backend: &dyn Backend, json: bool) -> anyhow::Result<u8> {
    let st = backend.status().await?;
    let ws = workspace_info();
    if json {
        print_json(&serde_json::json!({ "workspace": ws, "status": st }))?;
        return Ok(0);
    }
    if let Some(ws) = &ws {
        let service = ws["service"].as_str().unwrap_or("(no lane.toml here)");
        let branch = ws["branch"].as_str().unwrap_or("-");
        let commit: String = ws["commit"]
            .as_str()
            .unwrap_or("-")
            .chars()
            .take(8)
            .collect();
        println!("workspace:   {service} on {branch} @ {commit}");
    }
    println!(
        "backend:     {} (router {})",
        st.backend,
        st.router.as_deref().unwrap_or("-")
    );
    println!(
        "active lane: {} (header `{}`)",
        st.active_lane, st.lane_header
    );
    println!();
    output::lanes(&st);
    println!();
    output::baseline(&st);
    Ok(0)
}

/// Collects progress from a backend operation and renders it while the operation runs.
///
/// Ctrl-C cancels it and waits for the backend's answer: a deploy not yet live is rolled back
/// (`cancelled`), one already live completes (success). A second Ctrl-C stops waiting.
async fn with_progress<T>(
    json: bool,
    op: impl AsyncFnOnce(lane_api::ProgressTx, Cancel) -> lane_api::Result<T>,
) -> lane_api::Result<T> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
    let render = tokio::spawn(async move {
        let mut view = ProgressView::new();
        while let Some(p) = rx.recv().await {
            if !json {
                view.show(&p);
            }
        }
    });
    let cancel = Cancel::new();
    let interrupts = async {
        if tokio::signal::ctrl_c().await.is_err() {
            return std::future::pending().await;
        }
        cancel.cancel();
        eprintln!("\ncancelling (what is already live stays); Ctrl-C again to stop waiting");
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = tokio::select! {
        r = op(tx, cancel.clone()) => r,
        () = interrupts => Err(BackendError::stopped_waiting()),
    };
    let _ = render.await;
    result
}

async fn deploy(
    backend: &dyn Backend,
    lane: Option<String>,
    parent: Option<String>,
    ttl: Option<String>,
    force: bool,
    dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<u8> {
    let start = match dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let req = deploy_request(backend, &start, lane, parent, ttl, force).await?;
    let lane = req.lane.clone();
    let service = req.manifest.service.clone();
    let version = format!(
        "{}@{}",
        req.source.branch,
        &req.source.commit[..req.source.commit.len().min(8)]
    );
    let instance = with_progress(json, async |tx, cancel| {
        backend.deploy(req, tx, cancel).await
    })
    .await?;
    // The backend's label says `+dirty` when uncommitted changes went in.
    let version = instance
        .version
        .as_ref()
        .map_or(version, |v| v.version.clone());
    if json {
        print_json(&instance)?;
    } else {
        println!(
            "deployed {service} {version} into lane {lane}: {} at {}",
            instance.state.as_str(),
            instance.placement.endpoint()
        );
        if let Some(source) = instance.placement.source() {
            println!(
                "  built from a copy of your working tree in {}",
                source.display()
            );
        }
    }
    Ok(0)
}

/// What `lane deploy` (and the IDE's deploy-current-branch) asks of the backend: the current
/// branch of the repo containing `start`, into `lane` or else the active lane.
pub async fn deploy_request(
    backend: &dyn Backend,
    start: &Path,
    lane: Option<String>,
    parent: Option<String>,
    ttl: Option<String>,
    force: bool,
) -> anyhow::Result<DeployRequest> {
    let root = git::repo_root(start).map_err(|e| invalid(e.to_string()))?;
    let repo = service_dir(start, &root).ok_or_else(|| {
        BackendError::invalid(format!(
            "no {MANIFEST_FILE} in {} or in a directory above it up to the repository root {}",
            start.display(),
            root.display()
        ))
        .with_help(
            "a service needs a lane.toml at its root (the repository's, or the service's \
             directory in a monorepo); see the README's lane.toml reference",
        )
    })?;
    let manifest = load_manifest(&repo)?;
    let snapshot = manifest.snapshot;
    let (branch, commit) = git::head(&repo).map_err(|e| invalid(e.to_string()))?;
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
    Ok(DeployRequest {
        lane,
        manifest,
        source: SourceRef {
            dir: repo,
            branch,
            commit,
            build_from: if snapshot {
                BuildFrom::Snapshot
            } else {
                BuildFrom::InPlace
            },
        },
        owner: git::owner(),
        ttl_secs: parse_ttl(ttl.as_deref())?,
        parent: parent.as_deref().map(parse_lane).transpose()?,
        force,
    })
}

async fn baseline_up(backend: &dyn Backend, file: Option<PathBuf>) -> anyhow::Result<u8> {
    let path = match file {
        Some(f) => f,
        None => std::env::current_dir()?.join(WORKSPACE_FILE),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BackendError::invalid(format!("cannot read {}: {e}", path.display())).with_help(
            "list the baseline services in lane-workspace.toml: [[service]] path = \"...\"",
        )
    })?;
    let ws = Workspace::parse(&path, &text).map_err(|e| invalid(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut reqs = Vec::new();
    for rel in &ws.services {
        let dir = base.join(rel);
        let manifest = load_manifest(&dir)?;
        let (branch, commit) = git::head(&dir).unwrap_or_else(|_| ("-".into(), "-".into()));
        reqs.push(DeployRequest {
            lane: LaneRef::Baseline,
            manifest,
            // A baseline runs from the checkout the workspace file names.
            source: SourceRef {
                dir,
                branch,
                commit,
                build_from: BuildFrom::InPlace,
            },
            owner: git::owner(),
            ttl_secs: None,
            parent: None,
            force: true,
        });
    }
    let done = with_progress(false, async |tx, cancel| {
        backend.baseline_up(reqs, tx, cancel).await
    })
    .await?;
    for i in &done {
        println!(
            "baseline {} {} at {}",
            i.service,
            i.state.as_str(),
            i.placement.endpoint()
        );
    }
    Ok(0)
}

async fn proxy(
    backend: &dyn Backend,
    listen: std::net::SocketAddr,
    lane: Option<String>,
) -> anyhow::Result<u8> {
    let st = backend.status().await?;
    let fixed = lane.as_deref().map(parse_lane_ref).transpose()?;
    let current = Arc::new(RwLock::new(fixed.clone().unwrap_or(st.active_lane.clone())));
    let header = http::HeaderName::from_bytes(st.lane_header.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        BackendError::unavailable(format!("cannot listen on {listen}: {e}"))
            .with_help("pass --listen with a free address")
    })?;
    eprintln!(
        "lane proxy on http://{listen}: requests sent through it enter lane {} (set HTTP_PROXY=http://{listen})",
        current.read().map(|l| l.to_string()).unwrap_or_default()
    );
    if fixed.is_none() {
        // Follow `lane switch` live: the backend pushes changes, nobody polls.
        let current = current.clone();
        let mut revision = st.revision.clone();
        let local = local_backend()?;
        tokio::spawn(async move {
            loop {
                match local
                    .wait_for_change(Some(&revision), Duration::from_secs(30))
                    .await
                {
                    Ok(r) if r != revision => {
                        revision = r;
                        if let Ok(st) = local.status().await
                            && let Ok(mut cur) = current.write()
                            && *cur != st.active_lane
                        {
                            eprintln!(
                                "lane proxy: now sending requests into lane {}",
                                st.active_lane
                            );
                            *cur = st.active_lane;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
    }
    let lane_fn = move || {
        current
            .read()
            .map(|l| l.clone())
            .unwrap_or(LaneRef::Baseline)
    };
    lane_router::proxy::serve(listener, header, lane_fn, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(0)
}

/// `lane router`: the router on its own, following the local state file.
async fn standalone_router(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let dir = StateDir::new(default_state_dir()?);
    let table = lane_router::TableHandle::new(lane_core::RoutingTable::default());
    let router = lane_router::Router::new(lane_router::RouterConfig::default(), table.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| BackendError::unavailable(format!("cannot listen on {listen}: {e}")))?;
    eprintln!(
        "lane router on http://{listen}, following {}",
        dir.state_file().display()
    );
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let mtime = std::fs::metadata(dir.state_file())
                .and_then(|m| m.modified())
                .ok();
            if mtime != last {
                last = mtime;
                if let Ok(state) = dir.load() {
                    table.update(lane_local::routing_table(&state));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    router
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
