//! The local agent: one long-lived process per state dir that owns the lanes, supervises the
//! versions and runs the router. The CLI and the IDE daemon talk to it over `agent.sock`.
//!
//! **Architecture invariant:** the agent is the only writer of `state.json` while it runs, and it
//! writes under the state lock, atomically. Every operation that changes the state is a plan
//! recorded in the same save as its first change ([`crate::store::Plan`]) and carried out in the
//! agent's own task, whoever waits for it: it completes, or (a deploy that fails or is cancelled
//! before it went live) is undone. A plan an agent did not carry out to the end because it died is
//! finished or undone by the next agent, at its start.

mod data;
mod follow;
mod merged;
mod plans;

pub(crate) use follow::Trigger as FollowTrigger;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lane_core::lane::{DEFAULT_TTL, check_owner, check_parent};
use lane_core::{Endpoint, Lane, LaneId, LaneRef, PersonalVersion, RoutingTable, ServiceId};
use lane_router::{Router, RouterConfig, TableHandle};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Mutex, mpsc, watch};

use crate::source::{self, Sources};
use crate::store::{InstanceRecord, Plan, PlanKind, PlanPhase, RunSpec, State, StateDir, io_err};
use crate::supervisor::{
    BUILD_MARKER, INSTANCE_MARKER, Phase, PhaseEvent, ProcessGroup, Supervisor,
};
use lane_api::{BackendError, Result};
use lane_api::{
    BuildFrom, Cancel, DeployId, DeployRequest, ErrorCode, HistoryEntry, InstanceId, InstanceState,
    InstanceView, LaneEvent, LaneView, Placement, Progress, Revision, Stage, Status, Traffic,
};

/// Agent settings, from the environment (`lane agent` documents them).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub router_addr: SocketAddr,
    pub lane_header: String,
    pub port_range: (u16, u16),
    /// How often the agent reclaims expired lanes on its own (`lane gc` does it on demand).
    pub reap_interval: Duration,
    /// The router forwards the lane header as `baggage: lane=<id>` too (`LANE_HEADER_TO_BAGGAGE`).
    pub header_to_baggage: bool,
    /// How long a replaced version keeps running after the route moved off it, before it is told
    /// to stop (`LANE_DRAIN`): requests the router sent it just before the switch reach it.
    pub drain: Duration,
    /// How long a deleted lane's history is kept after its last entry (`LANE_HISTORY_KEEP`).
    pub history_keep: Duration,
    /// The agent exits on its own once it has run nothing (no lane, no instance, no operation) for
    /// this long (`LANE_AGENT_IDLE`, default 30m); zero: never.
    pub idle_exit: Duration,
    /// The router's timeouts and connection cap (`LANE_ROUTER_*_TIMEOUT`,
    /// `LANE_ROUTER_MAX_CONNECTIONS`).
    pub router_limits: lane_router::Limits,
    /// How long a lane whose branches are merged stays before it is reclaimed
    /// (`LANE_MERGED_GRACE`, default 1h; `lane extend` keeps it).
    pub merged_grace: Duration,
    /// How often the agent checks whether lanes' branches are merged
    /// (`LANE_MERGE_CHECK_INTERVAL`, default 30s); zero: never (no lane ends with its branch).
    pub merge_check: Duration,
    /// Run for a supervisor (`lane agent run`): when an agent runs already, wait for it, and take
    /// over the moment it dies without stopping cleanly, instead of exiting at once. Not from the
    /// environment.
    pub supervised: bool,
}

impl AgentConfig {
    /// `LANE_ROUTER_ADDR` (default `127.0.0.1:4080`; port 0 picks a free one), `LANE_HEADER`
    /// (default `x-lane`), `LANE_PORT_RANGE` (default `41000-41999`), `LANE_REAP_INTERVAL` (how
    /// often expired lanes are reclaimed, default `500ms`), `LANE_HEADER_TO_BAGGAGE` (`1` makes the
    /// router forward the lane header as `baggage: lane=<id>` too; default off), `LANE_DRAIN`
    /// (default `300ms`), `LANE_HISTORY_KEEP` (default `7d`), `LANE_AGENT_IDLE` (default `30m`;
    /// `0` never), `LANE_MERGED_GRACE` (default `1h`), `LANE_MERGE_CHECK_INTERVAL` (default `30s`;
    /// `0` never).
    /// often expired lanes are reclaimed, default `500ms`), and the router's limits
    /// ([`lane_router::Limits::from_env`]).
    pub fn from_env() -> Result<Self> {
        let router_addr = match std::env::var("LANE_ROUTER_ADDR") {
            Ok(v) if !v.is_empty() => v.parse().map_err(|_| {
                BackendError::invalid(format!(
                    "LANE_ROUTER_ADDR `{v}` is not an address like 127.0.0.1:4080"
                ))
            })?,
            _ => SocketAddr::from(([127, 0, 0, 1], 4080)),
        };
        let lane_header = std::env::var("LANE_HEADER")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "x-lane".into())
            .to_ascii_lowercase();
        let port_range = match std::env::var("LANE_PORT_RANGE") {
            Ok(v) if !v.is_empty() => parse_range(&v).ok_or_else(|| {
                BackendError::invalid(format!(
                    "LANE_PORT_RANGE `{v}` is not a range like 41000-41999"
                ))
            })?,
            _ => (41000, 41999),
        };
        let reap_interval = match std::env::var("LANE_REAP_INTERVAL") {
            Ok(v) if !v.is_empty() => lane_core::duration::parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    BackendError::invalid(format!(
                        "LANE_REAP_INTERVAL `{v}` is not a duration like 500ms or 1m"
                    ))
                })?,
            _ => Duration::from_millis(500),
        };
        let router_limits = lane_router::Limits::from_env().map_err(BackendError::invalid)?;
        Ok(AgentConfig {
            router_addr,
            lane_header,
            port_range,
            reap_interval,
            header_to_baggage: env_switch(HEADER_TO_BAGGAGE_ENV)?,
            drain: env_duration("LANE_DRAIN", Duration::from_millis(300), true)?,
            idle_exit: env_duration("LANE_AGENT_IDLE", Duration::from_secs(30 * 60), true)?,
            history_keep: env_duration(
                "LANE_HISTORY_KEEP",
                Duration::from_secs(7 * 24 * 3600),
                true,
            )?,
            router_limits,
            merged_grace: env_duration(MERGED_GRACE_ENV, Duration::from_secs(3600), true)?,
            merge_check: env_duration(MERGE_CHECK_ENV, Duration::from_secs(30), true)?,
            supervised: false,
        })
    }
}

/// How long a merged lane stays before it is reclaimed.
pub const MERGED_GRACE_ENV: &str = "LANE_MERGED_GRACE";
/// How often lanes' branches are checked for being merged (`0`: never).
pub const MERGE_CHECK_ENV: &str = "LANE_MERGE_CHECK_INTERVAL";

/// The environment variable that turns on the router's lane-header-to-baggage option.
pub const HEADER_TO_BAGGAGE_ENV: &str = "LANE_HEADER_TO_BAGGAGE";

/// An on/off environment variable: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`, empty
/// (any case); unset is off. Anything else is an invalid-input error naming the variable.
pub fn env_switch(name: &str) -> Result<bool> {
    let Ok(raw) = std::env::var(name) else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(BackendError::invalid(format!(
            "{name} `{raw}` is neither on (1, true, yes, on) nor off (0, false, no, off)"
        ))),
    }
}

/// A duration from the environment variable `name` (`500ms`, `2s`, `1m`; `0` when `zero_ok`),
/// `default` when unset or empty; zero is refused unless `zero_ok`.
pub fn env_duration(name: &str, default: Duration, zero_ok: bool) -> Result<Duration> {
    duration_setting(name, std::env::var(name).ok().as_deref(), default, zero_ok)
}

/// [`env_duration`] of the value `raw` of `name`.
fn duration_setting(
    name: &str,
    raw: Option<&str>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration> {
    match raw.map(str::trim) {
        Some("0") if zero_ok => Ok(Duration::ZERO),
        Some(v) if !v.is_empty() => lane_core::duration::parse_duration(v)
            .ok()
            .filter(|d| zero_ok || !d.is_zero())
            .ok_or_else(|| {
                BackendError::invalid(format!(
                    "{name} `{v}` is not a duration like 500ms, 2s or 1m{}",
                    if zero_ok { "" } else { " (above zero)" }
                ))
            }),
        _ => Ok(default),
    }
}

fn parse_range(v: &str) -> Option<(u16, u16)> {
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

/// What `agent.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub router: String,
    pub lane_header: String,
    pub started: u64,
}

/// The local backend's revision: its generation counter, as an opaque token.
pub fn revision(generation: u64) -> Revision {
    Revision::new(generation.to_string())
}

/// Reads back a revision this backend handed out; `None` for one it did not.
pub fn parse_revision(rev: &Revision) -> Option<u64> {
    rev.as_str().parse().ok()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Traffic samples for the per-minute figures.
#[derive(Default)]
struct TrafficHistory {
    samples: VecDeque<(std::time::Instant, Vec<lane_router::TrafficCount>)>,
    last_view: Vec<Traffic>,
}

/// Requests per service and lane, with how many came in the last minute (since the oldest sample).
fn per_minute(hist: &TrafficHistory, current: Vec<lane_router::TrafficCount>) -> Vec<Traffic> {
    let oldest = hist
        .samples
        .front()
        .map(|(_, s)| s.as_slice())
        .unwrap_or(&[]);
    current
        .into_iter()
        .map(|c| {
            let before = oldest
                .iter()
                .find(|o| o.service == c.service && o.lane == c.lane)
                .map_or(0, |o| o.requests);
            Traffic {
                per_minute: c.requests.saturating_sub(before),
                service: c.service,
                lane: c.lane,
                requests: c.requests,
            }
        })
        .collect()
}

pub(crate) struct Agent {
    dir: StateDir,
    config: AgentConfig,
    router_addr: SocketAddr,
    state: Mutex<State>,
    sup: Supervisor,
    router: Router,
    table: TableHandle,
    changes_tx: watch::Sender<u64>,
    shutdown_tx: watch::Sender<bool>,
    traffic: std::sync::Mutex<TrafficHistory>,
    sources: Sources,
    /// How many operations are under way (each holds an [`OpGuard`]); shutdown waits for them.
    ops: watch::Sender<usize>,
    /// The cancel signals of the streaming requests under way, by request id (`POST /cancel`).
    requests: std::sync::Mutex<HashMap<String, Cancel>>,
    next_request: AtomicU64,
    /// One look at the followed refs at a time (`follow.rs`): the ref watch, `lane baseline
    /// sync` and a followed service's `baseline up`.
    follow_turn: Mutex<()>,
    /// One data teardown at a time (`data.rs`): a second sweep waits for the one under way, so
    /// whoever asked for a lane's removal returns once its data is gone.
    sweep_turn: Mutex<()>,
}

/// Counts an operation as under way while it lives.
pub(crate) struct OpGuard<'a>(&'a watch::Sender<usize>);

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How long a stopping agent waits for operations under way: deploys not yet live roll back at
/// once; the others complete (stopping a process takes up to its grace period).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(12);

/// Runs the agent until it is told to stop. Returns when everything it ran has stopped.
pub async fn run_agent(dir: StateDir, config: AgentConfig) -> Result<()> {
    dir.create()?;
    let lock = File::create(dir.agent_lock()).map_err(|e| io_err("open", &dir.agent_lock(), e))?;
    let lock = if lock.try_lock().is_ok() {
        lock
    } else if !config.supervised {
        tracing::info!("an agent already runs for {}", dir.root.display());
        return Ok(());
    } else {
        match wait_for_running_agent(&dir, lock).await? {
            Some(lock) => lock,
            None => return Ok(()),
        }
    };
    let listener = tokio::net::TcpListener::bind(config.router_addr)
        .await
        .map_err(|e| {
            BackendError::unavailable(format!(
                "the router cannot listen on {}: {e}",
                config.router_addr
            ))
            .with_help(
                "another program uses that port; set LANE_ROUTER_ADDR to a free address \
                 (port 0 picks one) and run the command again",
            )
        })?;
    let router_addr = listener
        .local_addr()
        .map_err(|e| BackendError::internal(e.to_string()))?;
    let _ = std::fs::remove_file(dir.socket());
    let control =
        UnixListener::bind(dir.socket()).map_err(|e| io_err("listen on", &dir.socket(), e))?;
    // Whoever can connect can run any command: owner only, whatever the umask (the directory is
    // owner-only too, so nobody else could reach it before this).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.socket(), std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err("restrict", &dir.socket(), e))?;
    }

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor::new(dir.logs(), events_tx);
    sup.set_extra_env(vec![
        ("LANE_ROUTER_ADDR".into(), router_addr.to_string()),
        (INSTANCE_MARKER.into(), dir.root.display().to_string()),
    ]);
    let table = TableHandle::new(RoutingTable::default());
    let header = http::HeaderName::from_bytes(config.lane_header.as_bytes()).map_err(|_| {
        BackendError::invalid(format!(
            "LANE_HEADER `{}` is not a header name",
            config.lane_header
        ))
    })?;
    // Every proxied connection takes two descriptors: a desktop's soft limit of 1024 is soon spent.
    if let Err(e) = lane_router::raise_open_file_limit() {
        tracing::warn!("{e}");
    }
    let router = Router::new(
        RouterConfig {
            lane_header: header,
            header_to_baggage: config.header_to_baggage,
            limits: config.router_limits.clone(),
        },
        table.clone(),
    );
    let state = {
        let _l = dir.lock()?;
        dir.load()?
    };
    let (changes_tx, _) = watch::channel(state.generation);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let agent = Arc::new(Agent {
        dir: dir.clone(),
        config,
        router_addr,
        state: Mutex::new(state),
        sup,
        router: router.clone(),
        table,
        changes_tx,
        shutdown_tx,
        traffic: Default::default(),
        sources: Sources::new(dir.sources()),
        ops: watch::Sender::new(0),
        requests: Default::default(),
        next_request: AtomicU64::new(1),
        follow_turn: Mutex::new(()),
        sweep_turn: Mutex::new(()),
    });
    agent.recover().await?;
    agent.prune_sources().await;

    let info = AgentInfo {
        pid: std::process::id(),
        router: router_addr.to_string(),
        lane_header: agent.config.lane_header.clone(),
        started: now_secs(),
    };
    let info_json =
        serde_json::to_vec_pretty(&info).map_err(|e| BackendError::internal(e.to_string()))?;
    std::fs::write(dir.agent_info(), info_json)
        .map_err(|e| io_err("write", &dir.agent_info(), e))?;
    tracing::info!(
        router = %router_addr,
        header_to_baggage = agent.config.header_to_baggage,
        "agent started for {}",
        dir.root.display()
    );

    let router_task = tokio::spawn(router.serve(listener, wait_true(shutdown_rx.clone())));
    tokio::spawn(agent.clone().phase_loop(events_rx));
    tokio::spawn(agent.clone().housekeeping_loop(shutdown_rx.clone()));
    tokio::spawn(agent.clone().follow_watch_loop(shutdown_rx.clone()));
    let server = tokio::spawn(crate::control::serve(
        agent.clone(),
        control,
        shutdown_rx.clone(),
    ));

    let stop = shutdown_rx.clone();
    tokio::select! {
        _ = wait_true(stop.clone()) => {}
        _ = signal(tokio::signal::unix::SignalKind::terminate()) => {}
        _ = signal(tokio::signal::unix::SignalKind::interrupt()) => {}
    }
    let _ = agent.shutdown_tx.send(true);
    tracing::info!("agent stopping");
    // Deploys not yet live see the shutdown and roll back; other operations complete.
    let mut ops = agent.ops.subscribe();
    if tokio::time::timeout(SHUTDOWN_WAIT, ops.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!("operations still under way; the next agent finishes or undoes them");
    }
    agent.sup.stop_all().await;
    {
        let mut st = agent.state.lock().await;
        for rec in st.instances.values_mut() {
            rec.state = InstanceState::Stopped;
            rec.pid = None;
        }
        let _l = dir.lock()?;
        dir.save(&st)?;
    }
    let _ = router_task.await;
    // Replies to the last requests are delivered before the socket goes.
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    let _ = std::fs::remove_file(dir.socket());
    let _ = std::fs::remove_file(dir.agent_info());
    drop(lock);
    Ok(())
}

/// For a supervised agent started while another agent holds the state dir: blocks until that one
/// ends. One that died without cleaning up (its `agent.json` left behind: killed, crashed) is
/// taken over at once, lock in hand (`Some`); one that stopped cleanly (`lane down`, idle exit) is
/// not (`None`): a stopped agent stays stopped.
async fn wait_for_running_agent(dir: &StateDir, lock: File) -> Result<Option<File>> {
    tracing::info!(
        "an agent already runs for {}; waiting to take over if it dies",
        dir.root.display()
    );
    let path = dir.agent_lock();
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| BackendError::internal(e.to_string()))?
        .map_err(|e| io_err("lock", &path, e))?;
    if dir.agent_info().exists() {
        tracing::warn!("the agent it waited for died without stopping; taking over");
        Ok(Some(lock))
    } else {
        tracing::info!("the agent it waited for stopped cleanly; not taking over");
        Ok(None)
    }
}

async fn signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

pub(crate) async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Agent {
    /// Persists `state`, rebuilds the routing table and wakes watchers. Call with the lock held.
    fn commit(&self, state: &mut State) -> Result<()> {
        state.generation += 1;
        {
            let _l = self.dir.lock()?;
            self.dir.save(state)?;
        }
        self.table.set_protocols(
            state
                .instances
                .values()
                .map(|r| (SocketAddr::from(([127, 0, 0, 1], r.port)), r.protocol)),
        );
        self.table.update(routing_table(state));
        let _ = self.changes_tx.send(state.generation);
        Ok(())
    }

    /// Persists `state` when nothing anyone sees changed (a plan forgotten). Call with the lock
    /// held.
    fn save_quiet(&self, state: &State) -> Result<()> {
        let _l = self.dir.lock()?;
        self.dir.save(state)
    }

    pub(crate) fn op_started(&self) -> OpGuard<'_> {
        self.ops.send_modify(|n| *n += 1);
        OpGuard(&self.ops)
    }

    /// A new streaming request: its id (for `POST /cancel`) and its cancel signal.
    pub(crate) fn register_request(&self) -> (String, Cancel) {
        let id = format!("r{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        let cancel = Cancel::new();
        if let Ok(mut r) = self.requests.lock() {
            r.insert(id.clone(), cancel.clone());
        }
        (id, cancel)
    }

    pub(crate) fn forget_request(&self, id: &str) {
        if let Ok(mut r) = self.requests.lock() {
            r.remove(id);
        }
    }

    /// Cancels a streaming request; false when there is none by that id (it has ended).
    pub(crate) fn cancel_request(&self, id: &str) -> bool {
        let cancel = self.requests.lock().ok().and_then(|r| r.get(id).cloned());
        cancel.map(|c| c.cancel()).is_some()
    }

    async fn phase_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<PhaseEvent>) {
        while let Some(ev) = rx.recv().await {
            let mut st = self.state.lock().await;
            let Some(rec) = st.instances.get_mut(&ev.id) else {
                continue;
            };
            let (state, pid) = match &ev.phase {
                Phase::Starting { pid } => (InstanceState::Starting, Some(*pid)),
                Phase::Healthy { pid } => (InstanceState::Healthy, Some(*pid)),
                Phase::Unhealthy { pid } => (InstanceState::Unhealthy, Some(*pid)),
                Phase::Crashed { status } => {
                    tracing::warn!(instance = %ev.id, %status, "instance exited; restarting");
                    (InstanceState::Crashed, None)
                }
                Phase::Failed { .. } | Phase::Stopped => (InstanceState::Stopped, None),
            };
            if rec.state == state && rec.pid == pid && rec.restarts == ev.restarts {
                continue;
            }
            rec.state = state;
            rec.pid = pid;
            rec.restarts = ev.restarts;
            if let Err(e) = self.commit(&mut st) {
                tracing::error!("cannot save state: {e}");
            }
        }
    }

    async fn housekeeping_loop(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut ticks = 0u64;
        let mut reaped = std::time::Instant::now();
        let mut merge_checked = std::time::Instant::now();
        let mut ref_watch = None;
        let mut idle_since = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = wait_true(shutdown.clone()) => return,
            }
            ticks += 1;
            // Spare working copies age out (every 10 minutes).
            if ticks.is_multiple_of(1200) {
                self.prune_sources().await;
            }
            if reaped.elapsed() >= self.config.reap_interval {
                reaped = std::time::Instant::now();
                if let Err(e) = self.reclaim_expired().await {
                    tracing::error!("cannot reclaim expired lanes: {e}");
                }
                self.prune_history().await;
            }
            if !self.config.merge_check.is_zero()
                && (merge_checked.elapsed() >= self.config.merge_check
                    || self.refs_moved(&mut ref_watch).await)
            {
                merge_checked = std::time::Instant::now();
                self.check_merged().await;
            }
            if self.runs_something().await {
                idle_since = std::time::Instant::now();
            } else if !self.config.idle_exit.is_zero()
                && idle_since.elapsed() >= self.config.idle_exit
            {
                tracing::info!(
                    idle = ?self.config.idle_exit,
                    "the agent has run nothing for LANE_AGENT_IDLE; stopping (the next lane command starts it again)"
                );
                self.request_shutdown();
                return;
            }
            if self.sample_traffic() {
                let mut st = self.state.lock().await;
                if let Err(e) = self.commit(&mut st) {
                    tracing::error!("cannot save state: {e}");
                }
            }
        }
    }

    /// Takes a traffic sample every 5 s; true when the per-minute figures changed (status
    /// watchers are then woken, so IDEs show live traffic without polling).
    fn sample_traffic(&self) -> bool {
        let now = std::time::Instant::now();
        let mut hist = self
            .traffic
            .lock()
            .expect("traffic lock is never poisoned: no code panics while holding it");
        if hist
            .samples
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) < Duration::from_secs(5))
        {
            return false;
        }
        let current = self.router.traffic();
        hist.samples.push_back((now, current.clone()));
        while hist
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(65))
        {
            hist.samples.pop_front();
        }
        let view = per_minute(&hist, current);
        let changed = view != hist.last_view;
        hist.last_view = view;
        changed
    }

    fn traffic_view(&self) -> Vec<Traffic> {
        let current = self.router.traffic();
        let hist = self
            .traffic
            .lock()
            .expect("traffic lock is never poisoned: no code panics while holding it");
        per_minute(&hist, current)
    }

    fn view(&self, r: &InstanceRecord) -> InstanceView {
        InstanceView {
            id: InstanceId::new(r.id.clone()),
            service: r.service.clone(),
            lane: r.lane.clone(),
            placement: Placement::Process {
                addr: SocketAddr::from(([127, 0, 0, 1], r.port)),
                pid: r.pid,
                log: Some(self.sup.log_path(&r.id)),
                source: r.source.clone(),
            },
            state: r.state,
            restarts: r.restarts,
            version: r.version.clone(),
        }
    }

    /// Whether the agent has anything to keep running for: a lane, an instance (baseline
    /// included), a plan, or an operation under way.
    async fn runs_something(&self) -> bool {
        if *self.ops.borrow() > 0 {
            return true;
        }
        let st = self.state.lock().await;
        !st.lanes.is_empty() || !st.instances.is_empty() || !st.plans.is_empty()
    }

    /// Appends one entry to `lane`'s history; a failure to write is logged, not fatal (the change
    /// itself is saved already).
    pub(crate) fn note(
        &self,
        lane: &LaneId,
        event: LaneEvent,
        owner: &str,
        actor: Option<&str>,
        service: Option<&ServiceId>,
        reason: String,
    ) {
        let entry = HistoryEntry {
            at: now_secs(),
            lane: lane.clone(),
            event,
            owner: owner.to_owned(),
            actor: actor.map(str::to_owned),
            service: service.cloned(),
            reason,
        };
        if let Err(e) = crate::history::append(&self.dir.history(), &entry) {
            tracing::error!(%lane, "cannot append to the lane's history: {e}");
        }
    }

    /// The history of lane `id`: kept while it exists and for `LANE_HISTORY_KEEP` after.
    pub(crate) async fn history(&self, id: &LaneId) -> Result<Vec<HistoryEntry>> {
        match crate::history::read(&self.dir.history(), id)? {
            Some(entries) => Ok(entries),
            None => {
                let st = self.state.lock().await;
                Err(BackendError::not_found(format!("lane `{id}` has no history"))
                    .with_help(if st.lanes.is_empty() {
                        "it never existed here, or it was deleted longer ago than LANE_HISTORY_KEEP"
                            .to_owned()
                    } else {
                        format!(
                            "it never existed here, or it was deleted longer ago than \
                             LANE_HISTORY_KEEP; lanes now: {}",
                            st.lanes.keys().map(LaneId::as_str).collect::<Vec<_>>().join(", ")
                        )
                    }))
            }
        }
    }

    /// Forgets the histories of lanes deleted longer ago than `LANE_HISTORY_KEEP`.
    async fn prune_history(&self) {
        let st = self.state.lock().await;
        for lane in crate::history::prune(&self.dir.history(), self.config.history_keep, |l| {
            st.lanes.keys().any(|k| k.as_str() == l)
        }) {
            tracing::info!(%lane, "forgot the history of a lane deleted long enough ago");
        }
    }

    /// Deletes working copies no instance runs from, but one per service (see `source.rs`).
    async fn prune_sources(&self) {
        self.sources.prune(&self.sources_in_use().await);
    }

    /// The working copies instances run from, and those of processes still being stopped.
    async fn sources_in_use(&self) -> std::collections::HashSet<PathBuf> {
        let st = self.state.lock().await;
        let mut dirs: std::collections::HashSet<PathBuf> = st
            .instances
            .values()
            .filter_map(|r| r.source.clone())
            .collect();
        dirs.extend(self.sup.dirs_in_use());
        dirs
    }

    pub(crate) async fn status(&self) -> Status {
        let st = self.state.lock().await;
        let now = now_secs();
        let view = |r: &InstanceRecord| self.view(r);
        let table = routing_table(&st);
        let lanes = st
            .lanes
            .values()
            .map(|l| LaneView {
                lane: l.clone(),
                chain: table.chain(&l.id).into_iter().cloned().collect(),
                merged: st.merged.get(&l.id).cloned(),
                instances: st
                    .instances
                    .values()
                    .filter(|r| r.lane.lane() == Some(&l.id) && r.pending.is_none())
                    .map(view)
                    .collect(),
            })
            .collect();
        let baseline = st
            .instances
            .values()
            .filter(|r| r.lane == LaneRef::Baseline && r.pending.is_none())
            .map(view)
            .collect();
        Status {
            backend: "local".into(),
            router: Some(self.router_addr.to_string()),
            lane_header: self.config.lane_header.clone(),
            active_lane: st.active_lane.clone().into(),
            now,
            lanes,
            baseline,
            baseline_sync: follow::view(&st),
            traffic: self.traffic_view(),
            revision: revision(st.generation),
        }
    }

    /// Waits until the generation differs from `since` (at once for `None`), or `timeout`.
    /// (At once, too, when the agent stops: a long poll holds up no shutdown.)
    pub(crate) async fn wait_for_change(&self, since: Option<u64>, timeout: Duration) -> u64 {
        let mut rx = self.changes_tx.subscribe();
        if let Some(since) = since {
            let mut shutdown = self.shutdown_tx.subscribe();
            tokio::select! {
                _ = tokio::time::timeout(timeout, rx.wait_for(|g| *g != since)) => {}
                _ = shutdown.wait_for(|v| *v) => {}
            }
        }
        *rx.borrow()
    }

    pub(crate) fn request_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }

    /// Resolves when a deploy is to stop before going live: its client went away (`progress`
    /// closed: heartbeats notice within half a second), it was cancelled, or the agent stops.
    async fn stop_requested(&self, progress: &mpsc::Sender<Progress>, cancel: &Cancel) {
        let mut shutdown = self.shutdown_tx.subscribe();
        tokio::select! {
            _ = progress.closed() => {}
            _ = cancel.cancelled() => {}
            _ = shutdown.wait_for(|v| *v) => {}
        }
    }

    fn is_stop_requested(&self, progress: &mpsc::Sender<Progress>, cancel: &Cancel) -> bool {
        progress.is_closed() || cancel.is_cancelled() || *self.shutdown_tx.borrow()
    }

    /// Deploys one version, as a plan: recorded before anything is made; undone when it fails or
    /// is stopped (client gone, `cancel`, agent stopping) before the version went live; once live
    /// (the Register/Route commit, one save), completed whatever happens to the client.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        req: DeployRequest,
        progress: mpsc::Sender<Progress>,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let _op = self.op_started();
        let op = self.begin_deploy(&req).await?;
        // The lane's own copies of the service's data, before anything runs (not cancellable
        // half-way: a clone stopped mid-way would leave a partial database behind).
        if let LaneRef::Lane(id) = &req.lane
            && !req.manifest.data.is_empty()
        {
            let _ = progress
                .send(stage(
                    &req.manifest.service,
                    Stage::Build,
                    format!(
                        "provisioning the lane's data ({} binding{})",
                        req.manifest.data.len(),
                        if req.manifest.data.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    ),
                ))
                .await;
            if let Err(e) = self.provision_data(id, &req.manifest.data).await {
                self.undo(&op).await;
                let _ = self.sweep_data().await;
                return Err(e);
            }
        }
        let ready = tokio::select! {
            r = self.prepare(&req, &op, &progress) => r,
            () = self.stop_requested(&progress, &cancel) => Err(BackendError::cancelled()),
        };
        let outcome = match ready {
            Ok(ready) => {
                let _ = progress
                    .send(stage(
                        &req.manifest.service,
                        Stage::Register,
                        "registering the version".into(),
                    ))
                    .await;
                let live = {
                    let mut st = self.state.lock().await;
                    // Decided under the lock, in the same instant as the commit: a deploy stopped
                    // before this point rolls back, one not stopped goes live.
                    let stopped = self.is_stop_requested(&progress, &cancel);
                    self.go_live(&mut st, &req, &op, &ready, stopped)
                };
                // The copy belongs to the instance now (or is free again).
                drop(ready);
                match live {
                    Ok(view) => {
                        let _ = progress.try_send(stage(
                            &req.manifest.service,
                            Stage::Route,
                            "routed the lane to it".into(),
                        ));
                        self.drain_replaced(&op).await;
                        self.finish(&op).await;
                        self.look_for_work(view.id.as_str()).await;
                        Ok(view)
                    }
                    Err(e) => {
                        self.undo(&op).await;
                        Err(e)
                    }
                }
            }
            Err(e) => {
                self.undo(&op).await;
                // A lane the deploy had created is gone again, and its data with it.
                let _ = self.sweep_data().await;
                Err(e)
            }
        };
        // The copy a replaced version ran from, or this failed deploy's, is free now.
        self.prune_sources().await;
        outcome
    }

    /// After the route moved to a new version: gives the version it replaced [`AgentConfig::drain`]
    /// before it is told to stop (a request routed to it just before the switch still reaches a
    /// listening process; the ones it has, it finishes while it stops).
    async fn drain_replaced(&self, op: &DeployId) {
        let replaces = {
            let st = self.state.lock().await;
            st.plans.get(op).is_some_and(|p| !p.stop.is_empty())
        };
        if replaces && !self.config.drain.is_zero() {
            tokio::time::sleep(self.config.drain).await;
        }
    }

    /// Records the deploy's plan, creating its lane when missing (the plan says so).
    async fn begin_deploy(&self, req: &DeployRequest) -> Result<DeployId> {
        let mut st = self.state.lock().await;
        let before = st.clone();
        let mut plan = Plan::new(PlanKind::Deploy, PlanPhase::Prepare, now_secs());
        plan.lane = Some(req.lane.clone());
        plan.service = Some(req.manifest.service.clone());
        if let LaneRef::Lane(id) = &req.lane {
            match st.lanes.get(id) {
                Some(lane) => check_owner(lane, &req.owner, req.force)?,
                None => {
                    let lane = new_lane(&st, id, req.parent.as_ref(), &req.owner, req.ttl_secs)?;
                    st.lanes.insert(id.clone(), lane);
                    plan.created_lane = Some(id.clone());
                }
            }
        }
        let op = Self::plan_id(&mut st, PlanKind::Deploy);
        st.plans.insert(op.clone(), plan);
        self.record(&mut st, before)?;
        Ok(op)
    }

    /// Everything before going live: copy, build, start, health. Dropping this future leaves only
    /// what the plan lists (its undo stops it).
    async fn prepare(
        self: &Arc<Self>,
        req: &DeployRequest,
        op: &DeployId,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<Ready<'_>> {
        let service = req.manifest.service.clone();
        let stage = |s: Stage, message: String| stage(&service, s, message);
        // Build and run from a copy of the working tree as it is now, when asked to.
        // A baseline that follows production: from a copy of the commit its ref names.
        let copy = if req.source.build_from == BuildFrom::Snapshot || req.source.follow.is_some() {
            let cache = &req.manifest.build_cache;
            let claim =
                self.sources
                    .claim(&service, &self.sources_in_use().await, !cache.is_empty())?;
            let synced = match &req.source.follow {
                Some(follow) => {
                    let _ = progress
                        .send(stage(
                            Stage::Build,
                            format!(
                                "copying commit {} ({follow}: {}) to {}",
                                req.source.commit,
                                req.source.branch,
                                claim.dir.display()
                            ),
                        ))
                        .await;
                    source::checkout(
                        &req.source.dir,
                        &req.source.commit,
                        &req.source.branch,
                        &claim.dir,
                    )
                    .await?
                }
                None => {
                    let _ = progress
                        .send(stage(
                            Stage::Build,
                            format!("copying the working tree to {}", claim.dir.display()),
                        ))
                        .await;
                    source::sync(&req.source.dir, &claim.dir).await?
                }
            };
            tracing::info!(%service, tree = synced.tree, dirty = synced.dirty, dir = %claim.dir.display(), "working tree copied");
            if let Some(from) = &claim.seed {
                let _ = progress
                    .send(stage(
                        Stage::Build,
                        format!(
                            "new working copy: copying the build caches from {}",
                            from.display()
                        ),
                    ))
                    .await;
                let n = source::seed(
                    &from.join(&synced.prefix),
                    &claim.dir.join(&synced.prefix),
                    cache,
                )
                .await;
                tracing::info!(%service, from = %from.display(), copied = n, "build caches copied");
            }
            Some((claim, synced))
        } else {
            None
        };
        // The version is what the copy holds (HEAD may have moved since the client read it).
        let version = match &copy {
            Some((_, s)) => {
                PersonalVersion::new(&s.branch, &s.commit, &req.owner, now_secs()).dirty(s.dirty)
            }
            None => PersonalVersion::new(
                &req.source.branch,
                &req.source.commit,
                &req.owner,
                now_secs(),
            ),
        };
        // The service's directory in the copy (a monorepo's service is a subdirectory).
        let copied_dir = copy.as_ref().map(|(c, s)| c.dir.join(&s.prefix));
        let copy = copy.map(|(claim, _)| claim);
        let workdir = copied_dir.as_ref().unwrap_or(&req.source.dir);
        let version_env = BTreeMap::from([
            ("LANE_BRANCH".to_owned(), version.branch.clone()),
            ("LANE_COMMIT".to_owned(), version.commit.clone()),
            ("LANE_VERSION".to_owned(), version.version.clone()),
        ]);
        let _ = progress
            .send(stage(
                Stage::Build,
                req.manifest
                    .build
                    .as_deref()
                    .map_or("no build command".into(), |b| format!("running `{b}`")),
            ))
            .await;
        if let Some(build) = &req.manifest.build {
            run_build(
                build,
                workdir,
                &version_env,
                &self.dir.root,
                &service,
                req.manifest.build_timeout,
                progress,
            )
            .await?;
        }

        let _ = progress
            .send(stage(Stage::Start, "allocating a port".into()))
            .await;
        // A port found free can be taken by another process before the version binds it; then
        // the version is started again on another port (twice at most).
        let mut attempts = 0;
        let record = loop {
            attempts += 1;
            let (record, mut phases) = {
                let mut st = self.state.lock().await;
                lane_still_there(&st, req)?;
                // The data bindings' addresses: baseline's, or the lane's own copies'.
                let lane_doc = match &req.lane {
                    LaneRef::Lane(id) => st.lanes.get(id),
                    LaneRef::Baseline => None,
                };
                let data_env = lane_api::data_env(&req.manifest, &req.lane, lane_doc)?;
                let before = st.clone();
                let port = allocate_port(&st, self.config.port_range)?;
                st.next_seq += 1;
                let id = format!("{}/{}#{}", req.lane, service, st.next_seq);
                let mut env = req.manifest.env.clone();
                env.extend(data_env.clone());
                env.extend(version_env.clone());
                env.insert("LANE_HEADER".into(), self.config.lane_header.clone());
                let record = InstanceRecord {
                    id: id.clone(),
                    service: service.clone(),
                    lane: req.lane.clone(),
                    port,
                    spec: RunSpec {
                        command: req.manifest.run_command(port),
                        cwd: workdir.clone(),
                        env,
                        health: req.manifest.health.clone(),
                        health_timeout_ms: req.manifest.health_timeout.as_millis() as u64,
                    },
                    state: InstanceState::Starting,
                    pid: None,
                    restarts: 0,
                    version: Some(version.clone()),
                    pending: Some(op.clone()),
                    source: copy.as_ref().map(|c| c.dir.clone()),
                    protocol: req.manifest.protocol,
                    repo: Some(req.source.dir.clone()),
                    had_work: false,
                };
                // The record and the plan's mention of it are saved before the process starts.
                st.instances.insert(id.clone(), record.clone());
                match st.plans.get_mut(op) {
                    Some(plan) => plan.started.push(id),
                    None => {
                        *st = before;
                        return Err(BackendError::internal("the deploy's plan vanished"));
                    }
                }
                self.record(&mut st, before)?;
                let phases = self.sup.start(&record);
                (record, phases)
            };
            let _ = progress
                .send(stage(
                    Stage::Start,
                    format!("`{}` on port {}", record.spec.command, record.port),
                ))
                .await;
            let _ = progress
                .send(stage(
                    Stage::Health,
                    format!(
                        "waiting up to {}s for health",
                        req.manifest.health_timeout.as_secs()
                    ),
                ))
                .await;
            let reason = loop {
                let phase = phases.borrow_and_update().clone();
                match phase {
                    Phase::Healthy { .. } => break None,
                    Phase::Failed { reason, exited } => break Some((reason, exited)),
                    _ => {}
                }
                if phases.changed().await.is_err() {
                    // The instance was stopped under us: its lane was deleted or expired.
                    lane_still_there(&*self.state.lock().await, req)?;
                    return Err(BackendError::internal(
                        "the supervisor stopped unexpectedly",
                    ));
                }
            };
            let Some((reason, exited)) = reason else {
                break record;
            };
            // Our process is gone; if the port is still held, someone else has it.
            let taken = exited && !port_is_free(record.port);
            if taken && attempts < 3 {
                tracing::warn!(port = record.port, %service, "port taken by another process; starting on another");
                // Its process is gone already; forget it (a failed save leaves it to the undo, the
                // record still pending and in the plan).
                self.sup.stop(&record.id).await;
                let _ = std::fs::remove_file(self.sup.log_path(&record.id));
                {
                    let mut st = self.state.lock().await;
                    let before = st.clone();
                    st.instances.remove(&record.id);
                    if let Some(plan) = st.plans.get_mut(op) {
                        plan.started.retain(|s| *s != record.id);
                    }
                    self.record(&mut st, before)?;
                }
                let _ = progress
                    .send(stage(
                        Stage::Start,
                        format!(
                            "port {} was taken by another process meanwhile; trying another",
                            record.port
                        ),
                    ))
                    .await;
                continue;
            }
            return Err(BackendError::new(
                if exited {
                    ErrorCode::StartFailed
                } else {
                    ErrorCode::Unhealthy
                },
                format!("{service} did not start: {reason}"),
            )
            .with_help(format!(
                "check the run command and [health] in {}/lane.toml; nothing was left running",
                req.source.dir.display()
            )));
        };
        Ok(Ready {
            record,
            _copy: copy,
        })
    }

    /// The deploy's commit point, in one save: the new instance becomes live and routed, the
    /// version it replaces leaves the state, and the plan turns from undo to finish (it stops the
    /// replaced version). Call with the lock held. `stopped`: the deploy was stopped before this
    /// point, so nothing goes live.
    fn go_live(
        &self,
        st: &mut State,
        req: &DeployRequest,
        op: &DeployId,
        ready: &Ready<'_>,
        stopped: bool,
    ) -> Result<InstanceView> {
        if stopped {
            return Err(BackendError::cancelled());
        }
        lane_still_there(st, req)?;
        let record = &ready.record;
        if st
            .instances
            .get(&record.id)
            .is_none_or(|r| r.pending.as_ref() != Some(op))
        {
            return Err(BackendError::internal(format!(
                "the deployed instance {} vanished before it went live",
                record.id
            )));
        }
        let before = st.clone();
        // Live versions only: a deploy of the same service still under way keeps its instance
        // (and replaces this one when it goes live in turn).
        let replaced: Vec<String> = st
            .instances_of(&record.service, &req.lane)
            .filter(|r| r.id != record.id && r.pending.is_none())
            .map(|r| r.id.clone())
            .collect();
        let stop = st.take_instances(&replaced);
        if let Some(rec) = st.instances.get_mut(&record.id) {
            rec.pending = None;
            rec.state = InstanceState::Healthy;
        }
        if let LaneRef::Lane(id) = &req.lane
            && let (Some(lane), Some(version)) = (st.lanes.get_mut(id), record.version.clone())
        {
            lane.services.insert(record.service.clone(), version);
            // New work: the next merge check decides about the lane again.
            st.merged.remove(id);
        }
        let mut created = None;
        if let Some(plan) = st.plans.get_mut(op) {
            plan.phase = PlanPhase::Commit;
            plan.started.clear();
            created = plan.created_lane.take();
            plan.stop = stop;
        }
        let replaced_versions: Vec<String> = plan_stop_versions(&before, &replaced);
        self.record(st, before)?;
        if let LaneRef::Lane(id) = &req.lane
            && let Some(lane) = st.lanes.get(id)
        {
            let service = &record.service;
            if created.as_ref() == Some(id) {
                self.note(
                    id,
                    LaneEvent::Create,
                    &lane.owner,
                    Some(&req.owner),
                    None,
                    format!("created by the first deploy into it ({service})"),
                );
            }
            let what = record
                .version
                .as_ref()
                .map_or("a version".to_owned(), |v| v.version.clone());
            let replacing = if replaced_versions.is_empty() {
                String::new()
            } else {
                format!(", replacing {}", replaced_versions.join(", "))
            };
            self.note(
                id,
                LaneEvent::Deploy,
                &lane.owner,
                Some(&req.owner),
                Some(service),
                format!("deployed {service} {what}{replacing}"),
            );
        }
        st.instances
            .get(&record.id)
            .map(|r| self.view(r))
            .ok_or_else(|| BackendError::internal("the deployed instance vanished"))
    }

    /// `baseline up`: one deploy after the other. When one fails or is stopped, the ones already
    /// up stay up (each is live and routed: its deploy completed), and the error names them and
    /// the ones not started.
    pub(crate) async fn baseline_up(
        self: &Arc<Self>,
        reqs: Vec<DeployRequest>,
        progress: mpsc::Sender<Progress>,
        cancel: Cancel,
    ) -> Result<Vec<InstanceView>> {
        let mut done: Vec<InstanceView> = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            if self.is_stop_requested(&progress, &cancel) {
                let e = BackendError::cancelled();
                return Err(baseline_error(e, &done, None, &reqs[i..]));
            }
            // A service that follows production runs the commit its ref names; one that does
            // not runs its checkout as it is (and follows nothing any more).
            let deployed = if req.source.follow.is_some() {
                self.deploy_following(req.clone(), progress.clone(), cancel.clone())
                    .await
            } else {
                match self.stop_following(&req.manifest.service).await {
                    Ok(()) => {
                        self.deploy(req.clone(), progress.clone(), cancel.clone())
                            .await
                    }
                    Err(e) => Err(e),
                }
            };
            match deployed {
                Ok(v) => done.push(v),
                Err(e) => {
                    let at = Some(&req.manifest.service);
                    return Err(baseline_error(e, &done, at, &reqs[i + 1..]));
                }
            }
        }
        Ok(done)
    }
}

/// The versions of the instances `ids` in `st`, as history shows them.
fn plan_stop_versions(st: &State, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter_map(|id| st.instances.get(id))
        .map(|r| {
            r.version
                .as_ref()
                .map_or(r.id.clone(), |v| v.version.clone())
        })
        .collect()
}

/// Fails a deploy whose lane was deleted (`lane rm`) or expired while the deploy ran; the
/// caller's rollback then stops what the deploy started, so no instance outlives its lane.
fn lane_still_there(st: &State, req: &DeployRequest) -> Result<()> {
    match &req.lane {
        LaneRef::Lane(id) if !st.lanes.contains_key(id) => Err(BackendError::conflict(format!(
            "lane `{id}` was deleted or expired while {} was being deployed into it; nothing was \
             left running",
            req.manifest.service
        ))
        .with_help("deploy again; give the lane a longer --ttl, or `lane extend` it first")),
        _ => Ok(()),
    }
}

/// What a deploy has made ready to go live: its instance (healthy, pending) and the working copy
/// it runs from, held until the instance owns it.
struct Ready<'a> {
    record: InstanceRecord,
    _copy: Option<source::Claim<'a>>,
}

fn stage(service: &ServiceId, stage: Stage, message: String) -> Progress {
    Progress::Stage {
        service: service.clone(),
        stage,
        percent: stage.percent(),
        message,
    }
}

/// The error of a `baseline up` that stopped: at service `at` (its deploy failed or was
/// cancelled, and rolled back), or before starting the next one (`None`). What is up stays up,
/// and it says so.
fn baseline_error(
    e: BackendError,
    done: &[InstanceView],
    at: Option<&ServiceId>,
    rest: &[DeployRequest],
) -> BackendError {
    if done.is_empty() && rest.is_empty() {
        return e;
    }
    let list = |names: Vec<String>| names.join(", ");
    let up = list(done.iter().map(|v| v.service.to_string()).collect());
    let not_started = list(
        rest.iter()
            .map(|r| r.manifest.service.to_string())
            .collect(),
    );
    let mut lines = Vec::new();
    match (e.code, at) {
        (ErrorCode::Cancelled, Some(at)) => lines.push(format!(
            "baseline up cancelled before {at} went live ({at} was rolled back)"
        )),
        (ErrorCode::Cancelled, None) => lines.push("baseline up cancelled".to_owned()),
        (_, Some(at)) => {
            lines.push(e.message.clone());
            lines.push(format!("baseline up stopped at {at}, which did not start"));
        }
        (_, None) => lines.push(e.message.clone()),
    }
    if !done.is_empty() {
        lines.push(format!("up and staying up (running, routed): {up}"));
    }
    if !rest.is_empty() {
        lines.push(format!("not started: {not_started}"));
    }
    let help = match (&e.help, e.code) {
        (_, ErrorCode::Cancelled) | (None, _) => {
            "run `lane baseline up` again to start the rest (the ones up are replaced)".to_owned()
        }
        (Some(h), _) => format!("{h}; then run `lane baseline up` again"),
    };
    BackendError::new(e.code, lines.join("\n")).with_help(help)
}

fn no_lane(st: &State, id: &LaneId) -> BackendError {
    let known: Vec<&str> = st.lanes.keys().map(LaneId::as_str).collect();
    let help = if known.is_empty() {
        "there are no lanes yet; `lane create <id>` makes one".to_owned()
    } else {
        format!("existing lanes: {}", known.join(", "))
    };
    BackendError::not_found(format!("lane `{id}` does not exist")).with_help(help)
}

fn new_lane(
    st: &State,
    id: &LaneId,
    parent: Option<&LaneId>,
    owner: &str,
    ttl_secs: Option<u64>,
) -> Result<Lane> {
    if let Some(existing) = st.lanes.get(id) {
        return Err(BackendError::conflict(format!(
            "lane `{id}` already exists (owner {})",
            existing.owner
        ))
        .with_help("pick another id, or deploy into it with --lane"));
    }
    if let Some(parent) = parent {
        check_parent(id, parent, |l| {
            st.lanes.get(l).map(|lane| lane.parent.as_ref())
        })?;
    }
    let ttl = ttl_secs.map_or(DEFAULT_TTL, Duration::from_secs);
    if ttl.is_zero() {
        return Err(BackendError::invalid(
            "a lane's TTL must be longer than zero",
        ));
    }
    Ok(Lane::new(
        id.clone(),
        parent.cloned(),
        owner,
        now_secs(),
        ttl,
    ))
}

/// Builds the router's table from the state: healthy, completed instances only.
pub fn routing_table(st: &State) -> RoutingTable<SocketAddr> {
    let endpoints = st.instances.values().map(|r| Endpoint {
        service: r.service.clone(),
        lane: r.lane.clone(),
        healthy: r.state == InstanceState::Healthy && r.pending.is_none(),
        target: SocketAddr::from(([127, 0, 0, 1], r.port)),
    });
    RoutingTable::from_lanes(st.lanes.values(), endpoints, st.generation)
}

fn allocate_port(st: &State, (lo, hi): (u16, u16)) -> Result<u16> {
    let used: std::collections::HashSet<u16> = st.instances.values().map(|r| r.port).collect();
    let span = u32::from(hi - lo) + 1;
    let start = (st.next_seq as u32) % span;
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        if used.contains(&port) {
            continue;
        }
        if port_is_free(port) {
            return Ok(port);
        }
    }
    Err(
        BackendError::unavailable(format!("no free port in {lo}-{hi}: every port is taken"))
            .with_help("set LANE_PORT_RANGE to a range with free ports"),
    )
}

/// Nothing on this machine listens on `port` (loopback) right now.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

async fn run_build(
    command: &str,
    repo: &Path,
    env: &BTreeMap<String, String>,
    state_dir: &Path,
    service: &ServiceId,
    timeout: Duration,
    progress: &mpsc::Sender<Progress>,
) -> Result<()> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(repo)
        .envs(env)
        .env(BUILD_MARKER, state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BackendError::new(
                ErrorCode::BuildFailed,
                format!(
                    "cannot run the build command `{command}` in {}: {e}",
                    repo.display()
                ),
            )
        })?;
    let _group = ProcessGroup(child.id().unwrap_or(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    for reader in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    let wait = async {
        let mut closed = false;
        loop {
            tokio::select! {
                line = rx.recv(), if !closed => match line {
                    Some(line) => {
                        if tail.len() == 12 { tail.pop_front(); }
                        tail.push_back(line.clone());
                        let _ = progress.send(Progress::Log { service: service.clone(), line }).await;
                    }
                    None => closed = true,
                },
                status = child.wait() => {
                    // The last lines may still be in the pipes: read them (the failure's tail and
                    // the IDE's build output need them), but not for longer than a moment, as a
                    // process the build left behind may hold the pipes open.
                    let drain = async {
                        while let Some(line) = rx.recv().await {
                            if tail.len() == 12 { tail.pop_front(); }
                            tail.push_back(line.clone());
                            let _ = progress.send(Progress::Log { service: service.clone(), line }).await;
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                    return status;
                }
            }
        }
    };
    let status = match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(BackendError::new(
                ErrorCode::BuildFailed,
                format!("build failed: {e}"),
            ));
        }
        Err(_) => {
            return Err(BackendError::new(
                ErrorCode::BuildFailed,
                format!(
                    "the build `{command}` did not finish within {}s",
                    timeout.as_secs()
                ),
            )
            .with_help("raise [build] timeout in lane.toml"));
        }
    };
    if !status.success() {
        let tail: Vec<String> = tail.into_iter().collect();
        return Err(BackendError::new(
            ErrorCode::BuildFailed,
            format!(
                "the build `{command}` failed ({status}){}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n    {}", tail.join("\n    "))
                }
            ),
        )
        .with_help("fix the build, or run it by hand in the repository to see everything"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("10-20"), Some((10, 20)));
        assert_eq!(parse_range("20-10"), None);
        assert_eq!(parse_range("0-10"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[test]
    fn duration_settings() {
        let nine = Duration::from_secs(9);
        let get = |raw, zero_ok| duration_setting("LANE_X", raw, nine, zero_ok);
        assert_eq!(get(None, true).unwrap(), nine);
        assert_eq!(get(Some(" "), true).unwrap(), nine);
        assert_eq!(get(Some("0"), true).unwrap(), Duration::ZERO);
        assert_eq!(get(Some("0s"), true).unwrap(), Duration::ZERO);
        assert_eq!(
            get(Some("250ms"), false).unwrap(),
            Duration::from_millis(250)
        );
        let e = get(Some("0"), false).unwrap_err();
        assert!(
            e.message.contains("LANE_X") && e.message.contains("above zero"),
            "{e}"
        );
        let e = get(Some("soon"), true).unwrap_err();
        assert!(e.message.contains("LANE_X `soon`"), "{e}");
    }

    #[test]
    fn ports_skip_taken_ones() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let st = State::default();
        let got = allocate_port(&st, (port, port.saturating_add(5)));
        assert!(matches!(got, Ok(p) if p != port), "{got:?}");
        let err = allocate_port(&st, (port, port)).unwrap_err();
        assert!(err.message.contains("no free port"), "{err}");
    }
}
