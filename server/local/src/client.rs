//! The local backend as the CLI and the IDE daemon see it: a client of the agent that starts the
//! agent on demand.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use lane_core::{Lane, LaneId, LaneRef};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::agent::{AgentInfo, parse_revision, revision};
use crate::control::{
    CancelRequest, Line, PROTOCOL, PROTOCOL_HEADER, SHUTDOWN, WaitRequest, protocol_of,
    version_mismatch,
};
use crate::store::StateDir;
use crate::supervisor::{BUILD_MARKER, INSTANCE_MARKER};
use lane_api::{
    AssignRequest, BaselineSync, CreateLane, DeleteLane, DeployRequest, ExtendLane, GcReport,
    HistoryEntry, InstanceView, Revision, Status,
};
use lane_api::{Backend, Cancel, ProgressTx};
use lane_api::{BackendError, Result};

/// How long to wait for a freshly started agent.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// The local backend.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    dir: StateDir,
    exe: PathBuf,
    autostart: bool,
    agent_env: Vec<(String, String)>,
}

impl LocalBackend {
    /// `exe` is the `lane` binary that runs `lane agent` when no agent is running yet.
    pub fn new(dir: StateDir, exe: PathBuf) -> Self {
        LocalBackend {
            dir,
            exe,
            autostart: true,
            agent_env: Vec::new(),
        }
    }

    /// Environment for an agent this client starts (e.g. `LANE_ROUTER_ADDR`).
    pub fn with_agent_env(mut self, env: Vec<(String, String)>) -> Self {
        self.agent_env = env;
        self
    }

    /// A client that never starts an agent (for `lane down`, the standalone `lane router`, and
    /// the IDE daemon's status pusher).
    pub fn without_autostart(mut self) -> Self {
        self.autostart = false;
        self
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.dir
    }

    /// The running agent's `agent.json`, if an agent runs.
    pub fn agent_info(&self) -> Option<AgentInfo> {
        let bytes = std::fs::read(self.dir.agent_info()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub async fn is_running(&self) -> bool {
        UnixStream::connect(self.dir.socket()).await.is_ok()
    }

    /// Stops the agent and everything it runs. Returns false if none was running. Works with an
    /// agent of any version: `POST /shutdown` is the one request every version answers, and its
    /// reply is not read beyond its status.
    pub async fn down(&self) -> Result<bool> {
        if !self.is_running().await {
            return Ok(false);
        }
        let reply = self.send(SHUTDOWN, b"null".to_vec()).await?;
        // The agent stops after answering; what it answered does not matter.
        let _ = reply.collect().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.dir.socket().exists() || self.is_running().await {
            if Instant::now() > deadline {
                return Err(
                    BackendError::unavailable("the agent did not stop within 20s")
                        .with_help(format!("see {}", self.dir.agent_log().display())),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    async fn connect(&self) -> Result<UnixStream> {
        match UnixStream::connect(self.dir.socket()).await {
            Ok(s) => return Ok(s),
            Err(e) if !self.autostart => {
                return Err(BackendError::unavailable(format!(
                    "no lane agent runs for {} ({e})",
                    self.dir.root.display()
                ))
                .with_help("any lane command that needs it starts it"));
            }
            Err(_) => {}
        }
        self.start_agent().await?;
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if let Ok(s) = UnixStream::connect(self.dir.socket()).await {
                return Ok(s);
            }
            if let Ok(err) = std::fs::read_to_string(self.dir.root.join("agent.error")) {
                let (message, help) = err.split_once("\nhelp: ").unwrap_or((&err, ""));
                let e = BackendError::unavailable(format!(
                    "the lane agent could not start: {}",
                    message.trim()
                ));
                return Err(if help.is_empty() {
                    e
                } else {
                    e.with_help(help.trim())
                });
            }
            if Instant::now() > deadline {
                return Err(BackendError::unavailable(format!(
                    "the lane agent did not come up within {}s",
                    AGENT_START_TIMEOUT.as_secs()
                ))
                .with_help(format!("see {}", self.dir.agent_log().display())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `lane agent` detached from this process (its own process group, reparented to
    /// init), so it outlives the terminal or IDE that started it.
    async fn start_agent(&self) -> Result<()> {
        self.dir.create()?;
        let _ = std::fs::remove_file(self.dir.root.join("agent.error"));
        if self.start_supervised().await {
            return Ok(());
        }
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" agent >>"$1" 2>&1 </dev/null &"#)
            .arg(&self.exe)
            .arg(self.dir.agent_log())
            .env("LANE_HOME", &self.dir.root)
            // An agent started from inside an instance or a build must not look like one.
            .env_remove(INSTANCE_MARKER)
            .env_remove(BUILD_MARKER)
            .env_remove("LANE_INSTANCE")
            .envs(self.agent_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0)
            .status()
            .await
            .map_err(|e| {
                BackendError::unavailable(format!(
                    "cannot start the lane agent ({}): {e}",
                    self.exe.display()
                ))
            })?;
        if !status.success() {
            return Err(BackendError::unavailable(format!(
                "cannot start the lane agent: sh exited with {status}"
            )));
        }
        Ok(())
    }

    /// Has the supervisor `lane agent install` set up start the agent (`agent.supervisor` holds
    /// the command), so the agent runs supervised even after a `lane down` or an idle exit
    /// stopped it. False when there is none or it failed (then the agent starts detached).
    async fn start_supervised(&self) -> bool {
        let Ok(command) = std::fs::read_to_string(self.dir.agent_supervisor()) else {
            return false;
        };
        let command = command.trim();
        if command.is_empty() {
            return false;
        }
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => true,
            // Not a warning on every command where the supervisor cannot run (no user session):
            // `lane agent install` said so; `-v` shows it.
            Ok(out) => {
                tracing::info!(
                    "`{command}` failed ({}): {}; starting the agent unsupervised",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                false
            }
            Err(e) => {
                tracing::info!("cannot run `{command}` ({e}); starting the agent unsupervised");
                false
            }
        }
    }

    async fn send(&self, op: &str, body: Vec<u8>) -> Result<hyper::body::Incoming> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| agent_gone(&e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::post(format!("/{op}"))
            .header("host", "lane-agent")
            .header("content-type", "application/json")
            .header(PROTOCOL_HEADER, PROTOCOL)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| BackendError::internal(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| agent_gone(&e.to_string()))?;
        if op != SHUTDOWN {
            check_protocol(resp.headers())?;
        }
        Ok(resp.into_body())
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        req: &Req,
    ) -> Result<Resp> {
        self.call_stream(op, req, None, None).await
    }

    /// Sends `op` and reads its reply. For a streaming operation, `cancel` asks the agent to stop
    /// it (`POST /cancel` on a connection of its own) while this keeps reading the outcome.
    async fn call_stream<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        req: &Req,
        progress: Option<&ProgressTx>,
        cancel: Option<&Cancel>,
    ) -> Result<Resp> {
        let body = serde_json::to_vec(req).map_err(|e| BackendError::internal(e.to_string()))?;
        let mut incoming = self.send(op, body).await?;
        let mut buf = BytesMut::new();
        let mut request: Option<String> = None;
        // Whether the cancel is still to be passed on to the agent.
        let mut to_cancel = cancel.is_some();
        loop {
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(pos + 1);
                let parsed: Line<Resp> = serde_json::from_slice(&line).map_err(|e| {
                    BackendError::internal(format!(
                        "the agent sent a reply this lane cannot read: {e}"
                    ))
                    .with_help("the agent may be older than this binary; run `lane down` and retry")
                })?;
                match parsed {
                    Line::Accepted(id) => request = Some(id),
                    Line::Progress(p) => {
                        if let Some(tx) = progress {
                            let _ = tx.send(p);
                        }
                    }
                    Line::Heartbeat => {}
                    Line::Ok(v) => return Ok(v),
                    Line::Error(e) => return Err(e),
                }
            }
            if to_cancel
                && let (Some(c), Some(id)) = (cancel, &request)
                && c.is_cancelled()
            {
                to_cancel = false;
                self.send_cancel(id.clone());
            }
            // Until the agent named the request, a cancel waits for the next line.
            let frame = match (cancel, &request) {
                (Some(c), Some(_)) if to_cancel => {
                    tokio::select! {
                        f = incoming.frame() => f,
                        () = c.cancelled() => continue,
                    }
                }
                _ => incoming.frame().await,
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(agent_gone(&e.to_string())),
                None => return Err(agent_gone("the reply ended early")),
            }
        }
    }
}

impl LocalBackend {
    /// Asks the agent to cancel a streaming request, on a connection of its own (the request's
    /// connection carries its reply).
    fn send_cancel(&self, request: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let body = CancelRequest { request };
            if let Err(e) = this.call::<_, bool>("cancel", &body).await {
                tracing::warn!("cannot pass the cancel on to the agent: {e}");
            }
        });
    }
}

/// Refuses a reply from an agent of another protocol version (see `control.rs`).
fn check_protocol(headers: &http::HeaderMap) -> Result<()> {
    let agent = match protocol_of(headers) {
        Some(Ok(v)) if v == PROTOCOL => return Ok(()),
        Some(Ok(v)) => v.to_string(),
        Some(Err(text)) => format!("`{text}`"),
        None => "1 (from before versioned agents)".to_owned(),
    };
    Err(version_mismatch(&PROTOCOL.to_string(), &agent))
}

fn agent_gone(detail: &str) -> BackendError {
    BackendError::unavailable(format!("lost the connection to the lane agent: {detail}")).with_help(
        "it may have been stopped or crashed; run the command again (it restarts the agent)",
    )
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn status(&self) -> Result<Status> {
        self.call("status", &()).await
    }

    async fn create_lane(&self, req: CreateLane) -> Result<Lane> {
        self.call("create", &req).await
    }

    async fn delete_lane(&self, req: DeleteLane) -> Result<()> {
        self.call("delete", &req).await
    }

    async fn extend_lane(&self, req: ExtendLane) -> Result<Lane> {
        self.call("extend", &req).await
    }

    async fn deploy(
        &self,
        req: DeployRequest,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<InstanceView> {
        let got: Option<InstanceView> = self
            .call_stream("deploy", &req, Some(&progress), Some(&cancel))
            .await?;
        got.ok_or_else(|| BackendError::internal("the agent reported no instance"))
    }

    async fn baseline_up(
        &self,
        services: Vec<DeployRequest>,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<Vec<InstanceView>> {
        self.call_stream("baseline", &services, Some(&progress), Some(&cancel))
            .await
    }

    async fn baseline_sync(
        &self,
        progress: ProgressTx,
        cancel: Cancel,
    ) -> Result<Vec<BaselineSync>> {
        self.call_stream("baseline-sync", &(), Some(&progress), Some(&cancel))
            .await
    }

    async fn assign(&self, req: AssignRequest) -> Result<()> {
        self.call("assign", &req).await
    }

    async fn switch(&self, lane: LaneRef) -> Result<()> {
        self.call("switch", &lane).await
    }

    async fn gc(&self) -> Result<GcReport> {
        self.call("gc", &()).await
    }

    async fn history(&self, id: &LaneId) -> Result<Vec<HistoryEntry>> {
        self.call("history", id).await
    }

    async fn wait_for_change(
        &self,
        since: Option<&Revision>,
        timeout: Duration,
    ) -> Result<Revision> {
        let req = WaitRequest {
            // A revision of another backend (or none) is answered at once with the current one.
            since: since.and_then(parse_revision),
            timeout_ms: timeout.as_millis() as u64,
        };
        let generation: u64 = self.call("wait", &req).await?;
        Ok(revision(generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent on `dir`'s socket that answers every request `{"ok":null}` with `version` in the
    /// protocol header (`None`: no header, as agents before the handshake), and stops on
    /// `/shutdown` (its socket gone). Returns the paths it was asked for.
    fn fake_agent(
        dir: &StateDir,
        version: Option<&'static str>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = tokio::net::UnixListener::bind(dir.socket()).unwrap();
        let socket = dir.socket();
        tokio::spawn(async move {
            let mut asked = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let _ = tx.send(req.uri().path().to_owned());
                    async move {
                        let mut resp =
                            http::Response::new(Full::new(Bytes::from_static(b"{\"ok\":null}\n")));
                        if let Some(v) = version {
                            resp.headers_mut()
                                .insert(PROTOCOL_HEADER, http::HeaderValue::from_static(v));
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                while let Ok(path) = rx.try_recv() {
                    asked.push(path);
                }
                if asked.last().map(String::as_str) == Some("/shutdown") {
                    let _ = std::fs::remove_file(&socket);
                    return asked;
                }
            }
        })
    }

    fn temp_state(name: &str) -> StateDir {
        let root =
            std::env::temp_dir().join(format!("lane-client-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = StateDir::new(root);
        dir.create().unwrap();
        dir
    }

    #[tokio::test]
    async fn an_agent_of_another_version_is_a_clear_error_and_lane_down_still_stops_it() {
        for (version, named) in [(None, "1 (from before versioned agents)"), (Some("3"), "3")] {
            let dir = temp_state(named.split(' ').next().unwrap());
            let agent = fake_agent(&dir, version);
            let backend =
                LocalBackend::new(dir.clone(), PathBuf::from("/nonexistent")).without_autostart();

            let err = backend.status().await.unwrap_err();
            assert_eq!(err.code, lane_api::ErrorCode::Unavailable, "{err}");
            assert!(
                err.message
                    .contains(&format!("this lane speaks agent protocol {PROTOCOL}"))
                    && err.message.contains(&format!("agent speaks {named}")),
                "names both versions: {err}"
            );
            assert!(
                err.help.as_deref().unwrap_or("").contains("lane down"),
                "{err:?}"
            );

            assert!(backend.down().await.unwrap(), "lane down stops it");
            let asked = agent.await.unwrap();
            assert_eq!(asked, ["/status", "/shutdown"]);
            let _ = std::fs::remove_dir_all(&dir.root);
        }
    }
}
