//! What each command does. Every command goes through the [`Backend`] trait; only `agent`,
//! `down` and `router` know they are talking to the local backend.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::anyhow;
use lane_api::{
    AssignRequest, BuildFrom, CreateLane, DeleteLane, DeployRequest, ExtendLane, Progress,
    SourceRef,
};
use lane_api::{Backend, BackendError, Cancel};
use lane_core::duration::parse_duration;
use lane_core::manifest::{WORKSPACE_FILE, Workspace};
use lane_core::{LaneRef, ServiceId};
use lane_local::{AgentConfig, LocalBackend, StateDir, default_state_dir, run_agent};
use lane_workspace::Repo;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cli::{AgentCommand, BaselineCommand, Command};
use crate::output::{self, ProgressView};
use crate::requests::{
    backend_for, deploy_request, invalid, open_options, owner_in, parse_lane, parse_lane_ref,
    parse_ttl, workspace_error,
};
use crate::{demo, sample, trace};

/// Runs a command (any but `lsp`, which `main` runs) and returns the process exit code; prints
/// errors with their help.
pub async fn run(backend: Option<String>, command: Command) -> u8 {
    finish(dispatch(backend, command).await)
}

/// The exit code of a command's result; an error is printed with its help.
pub fn finish(result: anyhow::Result<u8>) -> u8 {
    match result {
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

pub(crate) fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn dispatch(backend: Option<String>, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Agent {
            command: Some(AgentCommand::Install { print, supervisor }),
        } => crate::agent_service::install(print, supervisor).await,
        Command::Agent {
            command: Some(AgentCommand::Uninstall { supervisor }),
        } => crate::agent_service::uninstall(supervisor).await,
        Command::Agent { command } => {
            let supervised = matches!(command, Some(AgentCommand::Run));
            let dir = StateDir::new(default_state_dir()?);
            // The consul backend's keeper runs beside the agent (in this process, while it runs):
            // it follows the lane documents for the versions this machine registered. When
            // another agent already runs for the dir, `run_agent` returns at once (or, supervised,
            // waits to take over) and the keeper with it.
            let quiet: std::sync::Arc<dyn lane_api::Backend> = std::sync::Arc::new(
                LocalBackend::new(dir.clone(), std::env::current_exe()?).without_autostart(),
            );
            let keeper = lane_backend::lane_consul::keeper::run_all(dir.root.clone(), quiet);
            let result = async {
                let config = AgentConfig {
                    supervised,
                    ..AgentConfig::from_env()?
                };
                tokio::select! {
                    r = run_agent(dir.clone(), config) => r,
                    () = keeper => Ok(()),
                }
            }
            .await;
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                crate::cli::CompletionShell::Bash => clap_complete::Shell::Bash,
                crate::cli::CompletionShell::Zsh => clap_complete::Shell::Zsh,
                crate::cli::CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut cmd = crate::cli::Cli::command();
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "lane", &mut script);
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&script).and_then(|()| out.flush())
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(anyhow!("cannot write the completion script: {e}"));
            }
            Ok(0)
        }
        Command::Down => {
            let backend = local_backend()?.without_autostart();
            if backend.down().await? {
                println!("stopped the lane agent and everything it ran");
            } else {
                println!("no lane agent was running");
            }
            Ok(0)
        }
        Command::Router {
            listen,
            lane_header,
            header_to_baggage,
            registry,
            prefix,
        } => {
            let header_to_baggage =
                header_to_baggage || lane_local::env_switch(lane_local::HEADER_TO_BAGGAGE_ENV)?;
            match registry.as_str() {
                "local" => standalone_router(listen, &lane_header, header_to_baggage).await?,
                "consul" => {
                    crate::consul_router::run(listen, &lane_header, &prefix, header_to_baggage)
                        .await?
                }
                other => {
                    return Err(invalid(format!(
                        "--registry `{other}` is not one of local, consul"
                    )));
                }
            }
            Ok(0)
        }
        Command::Lsp { .. } => Err(anyhow!("`lane lsp` is run by main")),
        Command::Operator {
            kubeconfig,
            namespaces,
            lane_header,
            election,
        } => crate::operator::run(kubeconfig, namespaces, lane_header, election).await,
        Command::Route { command } => crate::route::run(command).await,
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
                if !st.baseline_sync.is_empty() {
                    println!();
                    output::baseline_follow(&st.baseline_sync);
                }
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
                owner: me().await,
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
        Command::Rm {
            lane,
            dry_run: true,
            ..
        } => {
            let id = parse_lane(&lane)?;
            crate::data::rm_plan(backend, &std::env::current_dir()?, &id).await
        }
        Command::Rm { lane, force, .. } => {
            let id = parse_lane(&lane)?;
            backend
                .delete_lane(DeleteLane {
                    id: id.clone(),
                    actor: me().await,
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
                    actor: me().await,
                    force,
                })
                .await?;
            let now = lane_local::now_secs();
            println!(
                "lane {} now expires in {}",
                lane.id,
                output::remaining(lane.expires.saturating_sub(now))
            );
            output::kept_merged(backend, &lane.id).await;
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
                    actor: me().await,
                    force,
                })
                .await?;
            println!("moved {service} from lane {from} to lane {to}");
            Ok(0)
        }
        Command::Trace {
            target,
            lane,
            baggage,
            json,
        } => {
            let carrier = if baggage {
                trace::Carrier::Baggage
            } else {
                trace::Carrier::Header
            };
            trace::run(backend, &target, lane.as_deref(), carrier, json.json).await
        }
        Command::Data {
            command: crate::cli::DataCommand::Ls(f),
        } => crate::data::ls(backend, &std::env::current_dir()?, f.json).await,
        Command::Data { command } => crate::data_transfer::run(backend, command).await,
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
        Command::History { lane, json } => {
            let id = parse_lane(&lane)?;
            let entries = backend.history(&id).await?;
            if json.json {
                print_json(&entries)?;
            } else {
                output::history(&entries);
            }
            Ok(0)
        }
        Command::Baseline {
            command: BaselineCommand::Up { file },
        } => baseline_up(backend, file).await,
        Command::Baseline {
            command: BaselineCommand::Sync(f),
        } => crate::baseline_sync::run(backend, f.json).await,
        Command::Agent { .. }
        | Command::Down
        | Command::Completions { .. }
        | Command::Demo
        | Command::Router { .. }
        | Command::Lsp { .. }
        | Command::Operator { .. }
        | Command::Route { .. }
        | Command::SampleService { .. } => Err(anyhow!("this command does not take a backend")),
    }
}

/// The developer as the repository around the current directory knows them.
async fn me() -> String {
    owner_in(std::env::current_dir().unwrap_or_else(|_| ".".into())).await
}

/// The current directory's service (its nearest lane.toml up to the repository root) and git
/// state; `error` says why git could not tell (beyond "not in a repository").
fn workspace_info() -> Option<serde_json::Value> {
    let cwd = std::env::current_dir().ok()?;
    let repo = Repo::discover(&cwd);
    // The service's directory: the repository's root, or a monorepo service's directory.
    let root = match &repo {
        Ok(repo) => repo.service_dir(&cwd).unwrap_or_else(|_| repo.root.clone()),
        Err(_) => cwd,
    };
    let manifest = lane_workspace::load_manifest(&root).ok();
    let head = repo.as_ref().ok().map(|r| &r.head);
    let error = match &repo {
        Err(lane_workspace::WorkspaceError::NotARepository { .. }) | Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    Some(serde_json::json!({
        "root": root,
        "repo": repo.as_ref().ok().map(|r| &r.root),
        "service": manifest.map(|m| m.service.to_string()),
        "branch": head.filter(|h| h.commit.is_some()).map(|h| h.branch_name()),
        "commit": head.and_then(|h| h.commit.as_deref()),
        "error": error,
    }))
}

async fn status(backend: &dyn Backend, json: bool) -> anyhow::Result<u8> {
    let st = backend.status().await?;
    let ws = crate::requests::blocking(workspace_info)
        .await
        .ok()
        .flatten();
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
        if let Some(error) = ws["error"].as_str() {
            println!("             ({error})");
        }
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
    if !st.baseline_sync.is_empty() {
        println!();
        output::baseline_follow(&st.baseline_sync);
    }
    Ok(0)
}

/// Collects progress from a backend operation and renders it while the operation runs.
///
/// Ctrl-C cancels it and waits for the backend's answer: a deploy not yet live is rolled back
/// (`cancelled`), one already live completes (success). A second Ctrl-C stops waiting.
pub(crate) async fn with_progress<T>(
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
    let owner = owner_in(base.to_path_buf()).await;
    let mut reqs = Vec::new();
    for entry in &ws.entries {
        let dir = base.join(&entry.path);
        let manifest = lane_workspace::load_manifest(&dir).map_err(workspace_error)?;
        let in_dir = dir.clone();
        let (branch, commit) = crate::requests::blocking(move || {
            Repo::discover(&in_dir).and_then(|r| r.branch_and_commit())
        })
        .await?
        .unwrap_or_else(|_| ("-".into(), "-".into()));
        reqs.push(DeployRequest {
            lane: LaneRef::Baseline,
            manifest,
            // A baseline runs from the checkout the workspace file names.
            source: SourceRef {
                dir,
                branch,
                commit,
                build_from: BuildFrom::InPlace,
                // Or, when it follows production, from a working copy of the commit the ref names.
                follow: entry.followed_ref(),
            },
            owner: owner.clone(),
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
    // Other backends' active lane (Kubernetes: kept client-side) is read once, at start.
    if fixed.is_none() && backend.name() == "local" {
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

/// The configuration of a `lane router` of its own (`--registry local` or `consul`): the lane
/// header checked, the limits read from `LANE_ROUTER_*`, and the open-file limit raised.
pub(crate) fn router_config(
    lane_header: &str,
    header_to_baggage: bool,
) -> anyhow::Result<lane_router::RouterConfig> {
    let lane_header = http::HeaderName::from_bytes(lane_header.to_ascii_lowercase().as_bytes())
        .map_err(|_| {
            invalid(format!(
                "--lane-header / LANE_HEADER `{lane_header}` is not a header name"
            ))
        })?;
    let limits = lane_router::Limits::from_env().map_err(invalid)?;
    if let Err(e) = lane_router::raise_open_file_limit() {
        eprintln!("lane router: {e}");
    }
    Ok(lane_router::RouterConfig {
        lane_header,
        header_to_baggage,
        limits,
    })
}

/// The listening socket of a `lane router` of its own.
pub(crate) async fn bind_router(
    listen: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    Ok(tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| BackendError::unavailable(format!("cannot listen on {listen}: {e}")))?)
}

/// `lane router`: a router of its own, following the local agent's change feed (it never starts
/// an agent, and routes with the last table it had while the agent is away).
async fn standalone_router(
    listen: std::net::SocketAddr,
    lane_header: &str,
    header_to_baggage: bool,
) -> anyhow::Result<()> {
    let config = router_config(lane_header, header_to_baggage)?;
    let header = config.lane_header.clone();
    let backend = local_backend()?.without_autostart();
    let table = lane_router::TableHandle::new(lane_core::RoutingTable::default());
    let router = lane_router::Router::new(config, table.clone());
    let listener = bind_router(listen).await?;
    let as_baggage = if header_to_baggage {
        ", forwarded as baggage too"
    } else {
        ""
    };
    eprintln!(
        "lane router on http://{listen} (lane header `{header}`{as_baggage}), following the lane agent of {}",
        backend.state_dir().root.display()
    );
    tokio::spawn(follow_agent(backend, table));
    router
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Keeps `table` equal to the agent's routes: a status after every change the agent reports.
/// Says on stderr when the agent cannot be read, and again when it can.
async fn follow_agent(backend: LocalBackend, table: lane_router::TableHandle) {
    let mut revision: Option<lane_api::Revision> = None;
    let mut generation = 0u64;
    let mut broken = false;
    loop {
        let status = match backend.status().await {
            Ok(st) => st,
            Err(e) => {
                if !broken {
                    eprintln!(
                        "lane router: cannot read the lanes: {e}; routing with the last routes \
                         it had until the agent is back"
                    );
                    broken = true;
                }
                revision = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if broken {
            eprintln!("lane router: following the lane agent again");
            broken = false;
        }
        if revision.as_ref() != Some(&status.revision) {
            generation += 1;
            table.update(lane_api::routing_table(&status, generation, |i| {
                match i.placement {
                    lane_api::Placement::Process { addr, .. } => Some(addr),
                    _ => None,
                }
            }));
            revision = Some(status.revision.clone());
        }
        if let Err(e) = backend
            .wait_for_change(revision.as_ref(), Duration::from_secs(30))
            .await
        {
            tracing::debug!("agent change feed: {e}");
        }
    }
}
