//! Runs versions as local processes: start, health-check, restart with backoff, stop.
//!
//! Every process runs in its own process group, so stopping it also stops whatever its shell
//! started; every process carries `LANE_INSTANCE=<id>` in its environment so a restarted agent can
//! recognise (and reclaim) processes an earlier agent left behind, without trusting a bare pid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lane_core::manifest::HealthCheck;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::store::InstanceRecord;

/// How often a starting instance is probed.
const STARTING_PROBE: Duration = Duration::from_millis(100);
/// How often a healthy instance is probed.
const HEALTHY_PROBE: Duration = Duration::from_millis(1000);
/// Consecutive failed probes before a healthy instance is marked unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
/// Grace period between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Restart backoff: doubles from the first to the last value.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A run that stays up this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// What an instance is doing, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting {
        pid: u32,
    },
    Healthy {
        pid: u32,
    },
    Unhealthy {
        pid: u32,
    },
    /// Exited after having been healthy; will be restarted.
    Crashed {
        status: String,
    },
    /// Never became healthy; not restarted. The reason says why, with the log's last lines.
    Failed {
        reason: String,
        /// It exited (or could not be started); else its health check never passed.
        exited: bool,
    },
    Stopped,
}

/// A phase change, sent to the agent.
#[derive(Debug, Clone)]
pub struct PhaseEvent {
    pub id: String,
    pub phase: Phase,
    pub restarts: u32,
}

struct Handle {
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// What it runs from: its working copy, else its working directory.
    dir: PathBuf,
}

/// Owns the running instances.
pub struct Supervisor {
    logs: PathBuf,
    events_tx: mpsc::UnboundedSender<PhaseEvent>,
    handles: Mutex<HashMap<String, Handle>>,
    /// Instances being stopped, with what they run from ([`Handle::dir`]), until their processes
    /// are gone.
    stopping: Arc<Mutex<Vec<(String, PathBuf)>>>,
    extra_env: Vec<(String, String)>,
}

impl Supervisor {
    pub fn new(logs: PathBuf, events_tx: mpsc::UnboundedSender<PhaseEvent>) -> Self {
        Supervisor {
            logs,
            events_tx,
            handles: Mutex::new(HashMap::new()),
            stopping: Arc::default(),
            extra_env: Vec::new(),
        }
    }

    /// Environment every instance gets on top of its own (e.g. the router's address).
    pub fn set_extra_env(&mut self, env: Vec<(String, String)>) {
        self.extra_env = env;
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        log_path(&self.logs, id)
    }

    /// Starts `record` and returns a receiver of its phases.
    pub fn start(&self, record: &InstanceRecord) -> watch::Receiver<Phase> {
        self.run(record, None)
    }

    /// Takes over the running process group `pid` of `record`, which an earlier agent started
    /// (see [`adoptable`]): it is health-checked and stopped like one this supervisor started, and
    /// started anew when it dies.
    pub fn adopt(&self, record: &InstanceRecord, pid: u32) -> watch::Receiver<Phase> {
        self.run(record, Some(pid))
    }

    fn run(&self, record: &InstanceRecord, adopted: Option<u32>) -> watch::Receiver<Phase> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (phase_tx, phase_rx) = watch::channel(Phase::Stopped);
        let run = InstanceRun {
            record: record.clone(),
            log: self.log_path(&record.id),
            events_tx: self.events_tx.clone(),
            phase_tx,
            stop_rx,
            restarts: record.restarts,
            extra_env: self.extra_env.clone(),
            adopted,
        };
        let task = tokio::spawn(run.run());
        let old = lock(&self.handles).insert(
            record.id.clone(),
            Handle {
                stop_tx,
                task,
                dir: record
                    .source
                    .clone()
                    .unwrap_or_else(|| record.spec.cwd.clone()),
            },
        );
        if let Some(old) = old {
            let _ = old.stop_tx.send(true);
        }
        phase_rx
    }

    /// Stops an instance and waits until its process group is gone. Returns at once when the
    /// supervisor does not run it, or another caller is already stopping it.
    pub async fn stop(&self, id: &str) {
        if let Some(done) = self.begin_stop(id) {
            let _ = done.await;
        }
    }

    /// Stops instances all at once (a process that takes its time to exit holds up no other) and
    /// waits until every process group is gone.
    pub async fn stop_many(&self, ids: &[String]) {
        let waits: Vec<JoinHandle<()>> = ids.iter().filter_map(|id| self.begin_stop(id)).collect();
        for done in waits {
            let _ = done.await;
        }
    }

    /// Tells an instance to stop; the task returned ends when its process group is gone.
    fn begin_stop(&self, id: &str) -> Option<JoinHandle<()>> {
        let h = lock(&self.handles).remove(id)?;
        lock(&self.stopping).push((id.to_owned(), h.dir.clone()));
        let _ = h.stop_tx.send(true);
        // The directory stays reserved until the process is gone, even when the caller stops
        // waiting (a cancelled deploy).
        let stopping = self.stopping.clone();
        let id = id.to_owned();
        Some(tokio::spawn(async move {
            let _ = h.task.await;
            let mut stopping = lock(&stopping);
            if let Some(i) = stopping.iter().position(|(s, _)| *s == id) {
                stopping.swap_remove(i);
            }
        }))
    }

    /// Whether a process of instance `id` runs under this supervisor or is being stopped by it.
    pub fn knows(&self, id: &str) -> bool {
        lock(&self.handles).contains_key(id) || lock(&self.stopping).iter().any(|(s, _)| s == id)
    }

    /// What every process it runs, or is still stopping, runs from: working copies, or working
    /// directories of processes that run in place.
    pub fn dirs_in_use(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = lock(&self.handles)
            .values()
            .map(|h| h.dir.clone())
            .collect();
        dirs.extend(lock(&self.stopping).iter().map(|(_, d)| d.clone()));
        dirs
    }

    pub async fn stop_all(&self) {
        let ids: Vec<String> = lock(&self.handles).keys().cloned().collect();
        self.stop_many(&ids).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("supervisor lock is never poisoned: no code panics while holding it")
}

pub fn log_path(logs: &Path, id: &str) -> PathBuf {
    logs.join(format!("{}.log", id.replace(['/', '#'], "_")))
}

struct InstanceRun {
    record: InstanceRecord,
    log: PathBuf,
    events_tx: mpsc::UnboundedSender<PhaseEvent>,
    phase_tx: watch::Sender<Phase>,
    stop_rx: watch::Receiver<bool>,
    restarts: u32,
    extra_env: Vec<(String, String)>,
    /// The process group of a process an earlier agent started, watched until it dies.
    adopted: Option<u32>,
}

enum Outcome {
    Stop,
    /// Never became healthy: why, and whether it exited (else its health check never passed).
    Failed(String, bool),
    Exited(String),
}

impl InstanceRun {
    fn set(&self, phase: Phase) {
        let _ = self.events_tx.send(PhaseEvent {
            id: self.record.id.clone(),
            phase: phase.clone(),
            restarts: self.restarts,
        });
        let _ = self.phase_tx.send(phase);
    }

    async fn run(mut self) {
        let mut ever_healthy = false;
        let mut backoff = BACKOFF_FIRST;
        let mut adopted = self.adopted.take();
        loop {
            let started = Instant::now();
            let outcome = match adopted.take() {
                Some(pid) => {
                    ever_healthy = true;
                    self.watch_adopted(pid).await
                }
                None => self.run_once(&mut ever_healthy).await,
            };
            match outcome {
                Outcome::Stop => {
                    self.set(Phase::Stopped);
                    return;
                }
                Outcome::Failed(reason, exited) => {
                    self.set(Phase::Failed { reason, exited });
                    return;
                }
                Outcome::Exited(status) => {
                    self.set(Phase::Crashed { status });
                    if started.elapsed() > BACKOFF_RESET_AFTER {
                        backoff = BACKOFF_FIRST;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop_rx.changed() => { self.set(Phase::Stopped); return; }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    self.restarts += 1;
                }
            }
        }
    }

    async fn run_once(&mut self, ever_healthy: &mut bool) -> Outcome {
        if *self.stop_rx.borrow() {
            return Outcome::Stop;
        }
        let mut child = match spawn_logged(
            &self.record.spec.command,
            &self.record.spec.cwd,
            &self.env(),
            &self.log,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot start `{}`: {e}", self.record.spec.command);
                return if *ever_healthy {
                    Outcome::Exited(reason)
                } else {
                    Outcome::Failed(reason, true)
                };
            }
        };
        let pid = child.id().unwrap_or(0);
        let group = ProcessGroup(pid);
        self.set(Phase::Starting { pid });
        let started = Instant::now();
        let timeout = Duration::from_millis(self.record.spec.health_timeout_ms);
        let mut healthy = false;
        let mut failures = 0u32;
        loop {
            let interval = if healthy {
                HEALTHY_PROBE
            } else {
                STARTING_PROBE
            };
            tokio::select! {
                status = child.wait() => {
                    group.kill(Signal::SIGKILL);
                    let status = status.map_or_else(|e| e.to_string(), describe_exit);
                    if *ever_healthy {
                        return Outcome::Exited(status);
                    }
                    return Outcome::Failed(format!(
                        "the run command `{}` exited ({status}) before it became healthy{}",
                        self.record.spec.command,
                        log_tail(&self.log).await
                    ), true);
                }
                _ = self.stop_rx.changed() => {
                    terminate(&mut child, &group).await;
                    return Outcome::Stop;
                }
                _ = tokio::time::sleep(interval) => {
                    let ok = probe(&self.record.spec.health, self.record.port).await;
                    match (ok, healthy) {
                        (true, _) => {
                            failures = 0;
                            if !healthy {
                                healthy = true;
                                *ever_healthy = true;
                                self.set(Phase::Healthy { pid });
                            }
                        }
                        (false, true) => {
                            failures += 1;
                            if failures == UNHEALTHY_AFTER {
                                self.set(Phase::Unhealthy { pid });
                            }
                        }
                        (false, false) if !*ever_healthy && started.elapsed() > timeout => {
                            terminate(&mut child, &group).await;
                            return Outcome::Failed(format!(
                                "the health check ({}) did not pass within {}s{}",
                                describe_health(&self.record.spec.health, self.record.port),
                                timeout.as_secs_f32(),
                                log_tail(&self.log).await
                            ), false);
                        }
                        (false, false) => {}
                    }
                    if ok && failures == 0 && healthy {
                        // A recovered instance: report it healthy again.
                        if matches!(*self.phase_tx.borrow(), Phase::Unhealthy { .. }) {
                            self.set(Phase::Healthy { pid });
                        }
                    }
                }
            }
        }
    }

    /// Watches an adopted process group (not a child of this process: it cannot be waited for)
    /// like [`Self::run_once`] watches a healthy one, until it is gone or told to stop.
    async fn watch_adopted(&mut self, pid: u32) -> Outcome {
        let group = AdoptedGroup(ProcessGroup(pid));
        self.set(Phase::Healthy { pid });
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = self.stop_rx.changed() => {
                    group.terminate().await;
                    return Outcome::Stop;
                }
                _ = tokio::time::sleep(STARTING_PROBE) => {
                    if !group_alive(pid) {
                        group.0.kill(Signal::SIGKILL);
                        return Outcome::Exited("exited (an earlier agent had started it)".into());
                    }
                }
            }
            if probe(&self.record.spec.health, self.record.port).await {
                if failures >= UNHEALTHY_AFTER {
                    self.set(Phase::Healthy { pid });
                }
                failures = 0;
            } else {
                failures += 1;
                if failures == UNHEALTHY_AFTER {
                    self.set(Phase::Unhealthy { pid });
                }
            }
            tokio::select! {
                _ = self.stop_rx.changed() => {
                    group.terminate().await;
                    return Outcome::Stop;
                }
                _ = tokio::time::sleep(HEALTHY_PROBE - STARTING_PROBE) => {}
            }
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .record
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(self.extra_env.iter().cloned());
        env.push(("PORT".into(), self.record.port.to_string()));
        env.push(("LANE_INSTANCE".into(), self.record.id.clone()));
        env.push(("LANE_ID".into(), self.record.lane.to_string()));
        env.push(("LANE_SERVICE".into(), self.record.service.to_string()));
        env
    }
}

/// A process group that is killed when dropped (so a cancelled build leaves nothing running).
pub struct ProcessGroup(pub u32);

impl ProcessGroup {
    pub fn kill(&self, signal: Signal) {
        if self.0 > 1 {
            let _ = killpg(Pid::from_raw(self.0 as i32), signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill(Signal::SIGKILL);
    }
}

/// Stops a process group: SIGTERM to all of it, then the grace period for every process in it to
/// exit (not only the leader: a shell that runs the service as its child dies of SIGTERM at once,
/// while the service still finishes the requests it has), then SIGKILL to what is left.
async fn terminate(child: &mut Child, group: &ProcessGroup) {
    group.kill(Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    let leader = tokio::time::timeout(STOP_GRACE, child.wait()).await;
    while Instant::now() < deadline && group_alive(group.0) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    group.kill(Signal::SIGKILL);
    if leader.is_err() {
        let _ = child.wait().await;
    }
}

/// An adopted process group: stopped like [`terminate`] stops a child's, but waited for by
/// looking, since it is not a child.
struct AdoptedGroup(ProcessGroup);

impl AdoptedGroup {
    async fn terminate(&self) {
        self.0.kill(Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && group_alive(self.0.0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0.kill(Signal::SIGKILL);
    }
}

/// Whether `pid` is a process group an earlier agent of `state_dir` started for instance `id`
/// and still runs: its leader is alive and carries `LANE_INSTANCE=<id>` and
/// `LANE_STATE_DIR=<state_dir>`, and leads its own process group.
pub fn adoptable(pid: u32, id: &str, state_dir: &Path) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let instance = format!("LANE_INSTANCE={id}");
    let dir = format!("{INSTANCE_MARKER}={}", state_dir.display());
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    let leads = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)))
        .is_ok_and(|g| g.as_raw() == pid as i32);
    pid > 1
        && alive(pid as i32)
        && leads
        && vars.contains(&instance.as_bytes())
        && vars.contains(&dir.as_bytes())
}

/// Whether a live (not zombie) process is in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
            let mut fields = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace())
                .into_iter()
                .flatten();
            // After the command: state, ppid, pgrp.
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
            pid > 0 && pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
        })
    })
}

/// Spawns `sh -c command` in its own process group with stdout and stderr appended to `log`.
pub async fn spawn_logged(
    command: &str,
    cwd: &Path,
    env: &[(String, String)],
    log: &Path,
) -> std::io::Result<Child> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await?;
    file.write_all(format!("--- lane: starting `{command}`\n").as_bytes())
        .await?;
    let file = file.into_std().await;
    let err = file.try_clone()?;
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

fn describe_health(check: &HealthCheck, port: u16) -> String {
    match check {
        HealthCheck::Http { path } => format!("GET http://127.0.0.1:{port}{path}"),
        HealthCheck::Tcp => format!("TCP connect to 127.0.0.1:{port}"),
        HealthCheck::Command { command } => format!("`{command}`"),
    }
}

/// The last lines of a log, formatted to append to an error message.
pub async fn log_tail(log: &Path) -> String {
    let Ok(text) = tokio::fs::read_to_string(log).await else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().rev().take(8).collect();
    if lines.is_empty() {
        return String::new();
    }
    let body: Vec<&str> = lines.into_iter().rev().collect();
    format!(
        "\n  last lines of {}:\n    {}",
        log.display(),
        body.join("\n    ")
    )
}

/// Probes an instance once. Each probe has a short timeout of its own.
pub async fn probe(check: &HealthCheck, port: u16) -> bool {
    let attempt = async {
        match check {
            HealthCheck::Tcp => TcpStream::connect(("127.0.0.1", port)).await.is_ok(),
            HealthCheck::Http { path } => http_ok(port, path).await.unwrap_or(false),
            HealthCheck::Command { command } => Command::new("sh")
                .arg("-c")
                .arg(command.replace(lane_core::manifest::PORT_PLACEHOLDER, &port.to_string()))
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .unwrap_or(false)
}

async fn http_ok(port: u16, path: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let read = stream.read(&mut buf[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    let head = std::str::from_utf8(&buf[..n]).unwrap_or("");
    Ok(head.starts_with("HTTP/1.") && head.as_bytes().get(9) == Some(&b'2'))
}

/// Kills a process group left behind by an earlier agent, if `pid` still is that instance.
pub fn reclaim_stale(pid: u32, instance_id: &str) -> bool {
    let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(e) => e,
        Err(_) => return false,
    };
    let marker = format!("LANE_INSTANCE={instance_id}");
    let ours = environ
        .split(|b| *b == 0)
        .any(|var| var == marker.as_bytes());
    if ours {
        ProcessGroup(pid).kill(Signal::SIGKILL);
    }
    ours
}

/// The environment variable every build carries: `LANE_BUILD=<state dir>`. A build belongs to a
/// deploy request, so none may outlive the agent that ran it: the next agent of the same state dir
/// finds such builds by this marker and kills them (see [`strays`]).
pub const BUILD_MARKER: &str = "LANE_BUILD";

/// The environment variable every instance's process carries besides `LANE_INSTANCE`:
/// `LANE_STATE_DIR=<state dir>`, so that every process an agent started can be found by the state
/// dir it belongs to, even one whose pid no record holds (see [`strays`]).
pub const INSTANCE_MARKER: &str = "LANE_STATE_DIR";

/// A process that carries a marker of a state dir, in a process group other than the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    pub pid: i32,
    pub pgid: i32,
    /// Its `LANE_INSTANCE`, when it is an instance's process (else it is a build's).
    pub instance: Option<String>,
}

/// The live processes carrying [`BUILD_MARKER`] or [`INSTANCE_MARKER`] of `state_dir`: builds
/// and instances, whoever started them, except those of the caller's own process group.
pub fn strays(state_dir: &Path) -> Vec<Stray> {
    let build = format!("{BUILD_MARKER}={}", state_dir.display());
    let instance = format!("{INSTANCE_MARKER}={}", state_dir.display());
    let own = nix::unistd::getpgrp().as_raw();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let marked = vars
            .iter()
            .any(|v| *v == build.as_bytes() || *v == instance.as_bytes());
        if !marked || is_zombie(pid) {
            continue;
        }
        let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid))) else {
            continue;
        };
        if pgid.as_raw() == own || pgid.as_raw() <= 1 {
            continue;
        }
        let instance = vars.iter().find_map(|v| {
            v.strip_prefix(b"LANE_INSTANCE=")
                .map(|id| String::from_utf8_lossy(id).into_owned())
        });
        found.push(Stray {
            pid,
            pgid: pgid.as_raw(),
            instance,
        });
    }
    found
}

/// Kills the process groups of `strays` (SIGKILL); returns the pids that were alive.
pub fn kill_strays(strays: &[Stray]) -> Vec<u32> {
    let groups: std::collections::BTreeSet<i32> = strays.iter().map(|s| s.pgid).collect();
    for pgid in &groups {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    strays.iter().map(|s| s.pid as u32).collect()
}

/// Waits (at most `limit`) until none of `pids` is a live process any more.
pub async fn wait_gone(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| alive(*p as i32)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live process (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        alive(pid as i32)
    } else {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunSpec;

    fn record(command: &str, port: u16, health: HealthCheck, timeout_ms: u64) -> InstanceRecord {
        InstanceRecord {
            id: format!("test/{port}"),
            service: "t.svc".parse().unwrap(),
            lane: lane_core::LaneRef::Baseline,
            port,
            spec: RunSpec {
                command: command.into(),
                cwd: std::env::temp_dir(),
                env: Default::default(),
                health,
                health_timeout_ms: timeout_ms,
            },
            state: lane_api::InstanceState::Starting,
            pid: None,
            restarts: 0,
            version: None,
            pending: None,
            source: None,
            protocol: Default::default(),
            repo: None,
            had_work: false,
        }
    }

    async fn wait_for(rx: &mut watch::Receiver<Phase>, want: impl Fn(&Phase) -> bool) -> Phase {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if want(&rx.borrow()) {
                    return rx.borrow().clone();
                }
                rx.changed().await.unwrap();
            }
        })
        .await
        .expect("phase reached in time")
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn exits_at_once_fails_with_log_tail() {
        let logs = std::env::temp_dir();
        let (tx, _rx) = mpsc::unbounded_channel();
        let sup = Supervisor::new(logs, tx);
        let rec = record(
            "echo boom-message; exit 3",
            free_port(),
            HealthCheck::Tcp,
            5000,
        );
        let mut rx = sup.start(&rec);
        let phase = wait_for(&mut rx, |p| matches!(p, Phase::Failed { .. })).await;
        let Phase::Failed { reason, exited } = phase else {
            unreachable!()
        };
        assert!(exited);
        assert!(
            reason.contains("exited (exit code 3) before it became healthy"),
            "{reason}"
        );
        assert!(reason.contains("boom-message"), "{reason}");
    }

    #[tokio::test]
    async fn health_timeout_kills_the_process() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let sup = Supervisor::new(std::env::temp_dir(), tx);
        let rec = record("sleep 30", free_port(), HealthCheck::Tcp, 300);
        let mut rx = sup.start(&rec);
        let pid = match wait_for(&mut rx, |p| matches!(p, Phase::Starting { .. })).await {
            Phase::Starting { pid } => pid,
            _ => unreachable!(),
        };
        let phase = wait_for(&mut rx, |p| matches!(p, Phase::Failed { .. })).await;
        assert!(
            matches!(phase, Phase::Failed { reason, exited: false } if reason.contains("did not pass within 0.3s"))
        );
        assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
    }

    /// A process in a monorepo copy runs in a subdirectory; its copy, not that subdirectory, stays
    /// reserved while it runs and until a stop has finished, even if whoever stopped it stopped
    /// waiting.
    #[tokio::test]
    async fn a_copy_stays_in_use_until_its_process_is_gone() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let sup = Supervisor::new(std::env::temp_dir(), tx);
        let copy = std::env::temp_dir().join(format!("lane-sup-copy-{}", std::process::id()));
        std::fs::create_dir_all(copy.join("services/b")).unwrap();
        // Ignores SIGTERM, so the stop takes the whole grace period.
        let mut rec = record(
            "trap '' TERM; while :; do sleep 0.05; done",
            free_port(),
            HealthCheck::Command {
                command: "true".into(),
            },
            5000,
        );
        rec.spec.cwd = copy.join("services/b");
        rec.source = Some(copy.clone());
        let mut rx = sup.start(&rec);
        wait_for(&mut rx, |p| matches!(p, Phase::Healthy { .. })).await;
        assert_eq!(sup.dirs_in_use(), vec![copy.clone()]);

        // The caller gives up waiting at once: the copy is still in use while the process lives.
        let _ = tokio::time::timeout(Duration::from_millis(50), sup.stop(&rec.id)).await;
        assert_eq!(
            sup.dirs_in_use(),
            vec![copy.clone()],
            "reserved while stopping"
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while !sup.dirs_in_use().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("released once the process is gone");
        let _ = std::fs::remove_dir_all(&copy);
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }
}
