//! A Consul HTTP API test double: one agent of one datacenter (`dc1`) that is also its own server,
//! for the endpoints `lane` uses, answering as Consul's HTTP API documents them. It is test support
//! code, never a backend: `tests/consul-conformance/` checks it against HashiCorp's own Go client.
//!
//! Modelled:
//! - `PUT /v1/agent/service/register` (HTTP and TCP checks that the double really runs on their
//!   interval; a check starts `critical` unless its `Status` says otherwise),
//!   `PUT /v1/agent/service/deregister/<id>` (404 for an unknown id, or one registered through
//!   another agent), `GET /v1/agent/services`, `GET /v1/agent/self`; a check's
//!   `DeregisterCriticalServiceAfter` is kept and enforced (the service is deregistered once its
//!   probe has found it critical that long);
//! - nodes: the double's own agent is node [`NODE`]; [`ConsulDouble::add_agent`] starts the agent
//!   of another node on its own port (shared catalog, health and KV; `/v1/agent/*` answers for
//!   that node), and [`ConsulDouble::set_node_health`] sets a node's `serfHealth` check, which
//!   every health answer includes for the instances on that node;
//! - `PUT /v1/catalog/deregister` (`Node` with `ServiceID`, `CheckID` or neither), as Consul
//!   documents it for external services and dead nodes (no anti-entropy is modelled, so a live
//!   node's agent does not register a removed service again);
//! - `GET /v1/health/service/<name>` with `passing`, `tag` (repeatable, all must match) and
//!   `filter` (a subset of the filter language: `and`-joined `contains`, `in`, `==`, `!=` on
//!   `Service.ID`, `Service.Service`, `Service.Tags`, `Service.Address`, `Service.Port`,
//!   `Service.Meta.<key>`, `Node.Node`; anything else is a 400 as Consul answers an expression it
//!   cannot parse);
//! - `GET /v1/health/state/<state>` (`any`, `passing`, `warning`, `critical`): checks by state;
//! - `GET /v1/catalog/services`;
//! - `GET|PUT|DELETE /v1/kv/<key>` with `recurse`, `raw`, `keys`, `cas` (`true`/`false` bodies),
//!   base64 `Value`s, 404 for a missing key;
//! - blocking queries on every read: `index` and `wait` (default 5 minutes, at most 10, plus up to
//!   wait/16 of jitter), `X-Consul-Index` (never 0), `X-Consul-KnownLeader`,
//!   `X-Consul-LastContact`; a query blocks while its result's index is not above `index`, as
//!   Consul's server does, so a client whose index is ahead of the server's (after a reset) waits
//!   out `wait` and must then reset its index, as the blocking-query docs tell clients to;
//! - ACLs (when tokens are configured): the token from `X-Consul-Token`, `Authorization: Bearer`
//!   or `?token=`; an unknown token is `403 ACL not found`, a known one without the right is
//!   `403 Permission denied`; recursive KV reads and health reads filter out what the token
//!   cannot read;
//! - `dc`: only `dc1` exists (another is `500 No path to datacenter`).
//!
//! Switches for failure tests: [`ConsulDouble::set_unreachable`] (the port refuses connections and
//! open ones are dropped), [`ConsulDouble::set_delay`] (every answer is late),
//! [`ConsulDouble::reset_index`] (the index starts again from a low value, as after a restore into
//! a new cluster), [`ConsulDouble::force_check`] (a check's status, until the next probe sets
//! it).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// The one datacenter of the double.
pub const DATACENTER: &str = "dc1";
/// The node every service is registered on.
pub const NODE: &str = "double-node";
/// Consul's default and longest blocking wait.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

/// What a token may do (a small model of a Consul ACL policy).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `key_prefix "<p>" { policy = "read" | "write" }`, longest prefix wins.
    pub keys: Vec<(String, Access)>,
    /// `service_prefix "<p>" { policy = ... }`, longest prefix wins.
    pub services: Vec<(String, Access)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Deny,
    Read,
    Write,
}

impl Policy {
    /// Everything allowed (a management token).
    pub fn management() -> Policy {
        Policy {
            keys: vec![(String::new(), Access::Write)],
            services: vec![(String::new(), Access::Write)],
        }
    }

    fn access(rules: &[(String, Access)], name: &str) -> Access {
        rules
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, a)| *a)
            .unwrap_or(Access::Deny)
    }

    fn key(&self, key: &str) -> Access {
        Self::access(&self.keys, key)
    }

    fn service(&self, name: &str) -> Access {
        Self::access(&self.services, name)
    }
}

#[derive(Debug, Clone)]
struct KvEntry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
}

#[derive(Debug, Clone)]
enum Probe {
    Http(String),
    Tcp(String),
    /// Set by the API only (no probe).
    None,
}

#[derive(Debug, Clone)]
struct Check {
    id: String,
    name: String,
    status: String,
    output: String,
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    create_index: u64,
    modify_index: u64,
    /// `DeregisterCriticalServiceAfter`: the agent deregisters the service once this check has
    /// been critical that long.
    deregister_after: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Service {
    id: String,
    name: String,
    tags: Vec<String>,
    address: String,
    port: u16,
    meta: BTreeMap<String, String>,
    checks: Vec<Check>,
    create_index: u64,
    modify_index: u64,
    /// Bumped when the service is replaced, so its old probes stop.
    generation: u64,
    /// The node (agent) it was registered on.
    node: String,
}

impl Service {
    /// No service: for the node's own check alone.
    fn placeholder() -> Service {
        Service {
            id: String::new(),
            name: String::new(),
            tags: Vec::new(),
            address: String::new(),
            port: 0,
            meta: BTreeMap::new(),
            checks: Vec::new(),
            create_index: 0,
            modify_index: 0,
            generation: 0,
            node: NODE.to_owned(),
        }
    }
}

/// A node of the datacenter: the status of its `serfHealth` check (whether its agent is alive and
/// reachable, as the servers see it).
#[derive(Debug, Clone)]
struct NodeState {
    serf: String,
    modify_index: u64,
}

#[derive(Default)]
struct State {
    /// The raft index of the last write.
    index: u64,
    kv: BTreeMap<String, KvEntry>,
    /// Deleted keys and the index of their deletion.
    tombstones: BTreeMap<String, u64>,
    kv_index: u64,
    services: BTreeMap<String, Service>,
    /// Per service name: the index of the last change to its instances or their checks.
    service_index: HashMap<String, u64>,
    /// The last registration or deregistration (the catalog's services table).
    catalog_index: u64,
    /// The last change of any check (the checks table).
    checks_index: u64,
    generation: u64,
    /// Every node of the datacenter by name (the double's own, [`NODE`], and the agents of
    /// [`ConsulDouble::add_agent`]).
    nodes: BTreeMap<String, NodeState>,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// A registration or deregistration of an instance of `name` at index `at`.
    fn touch_service(&mut self, name: &str, at: u64) {
        self.service_index.insert(name.to_owned(), at);
        self.catalog_index = at;
        self.checks_index = at;
    }

    /// A check of an instance of `name` changed at index `at` (the catalog's service list did
    /// not).
    fn touch_check(&mut self, name: &str, at: u64) {
        self.service_index.insert(name.to_owned(), at);
        self.checks_index = at;
    }

    fn serf(&self, node: &str) -> &str {
        self.nodes.get(node).map_or("critical", |n| n.serf.as_str())
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    /// `None`: ACLs disabled (everything allowed).
    tokens: Option<HashMap<String, Policy>>,
    delay: Mutex<Duration>,
    /// true while the double refuses connections.
    down: watch::Sender<bool>,
    /// true while the listener is open (the serve loop's answer to `down`).
    listening: watch::Sender<bool>,
    requests: std::sync::atomic::AtomicU64,
}

/// How to start a double.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None`: ACLs disabled. `Some`: only these tokens are known (anonymous requests have no
    /// rights).
    pub tokens: Option<HashMap<String, Policy>>,
    /// The address to listen on; `None`: `127.0.0.1:0`.
    pub addr: Option<SocketAddr>,
}

/// A running double, stopped on drop.
pub struct ConsulDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// The agents of other nodes ([`ConsulDouble::add_agent`]).
    agents: Mutex<BTreeMap<String, SocketAddr>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsulDouble {
    /// Starts a double on its own thread and runtime.
    pub fn start(opts: Options) -> std::io::Result<ConsulDouble> {
        let std_listener =
            std::net::TcpListener::bind(opts.addr.unwrap_or(([127, 0, 0, 1], 0).into()))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = State {
            nodes: BTreeMap::from([(
                NODE.to_owned(),
                NodeState {
                    serf: "passing".into(),
                    modify_index: 1,
                },
            )]),
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
            tokens: opts.tokens,
            delay: Mutex::new(Duration::ZERO),
            down: watch::Sender::new(false),
            listening: watch::Sender::new(true),
            requests: Default::default(),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("consul-double".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("a tokio listener");
                    tokio::select! {
                        _ = serve(s, addr, Some(listener), NODE.into()) => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(ConsulDouble {
            addr,
            shared,
            runtime: handle,
            agents: Mutex::new(BTreeMap::new()),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:<port>`, as `CONSUL_HTTP_ADDR` takes it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the agent of another node `node` of the same datacenter, on its own port (as each
    /// machine of a datacenter runs its own Consul agent): the catalog, health and KV are shared;
    /// `/v1/agent/*` answers for `node` (services registered through it are on `node`, and only
    /// they can be deregistered through it). Answers the agent's address; a node started twice
    /// keeps its first address.
    pub fn add_agent(&self, node: &str) -> std::io::Result<SocketAddr> {
        let mut agents = self.agents.lock().unwrap();
        if let Some(a) = agents.get(node) {
            return Ok(*a);
        }
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        {
            let mut st = self.shared.state.lock().unwrap();
            let at = st.bump();
            st.nodes.insert(
                node.to_owned(),
                NodeState {
                    serf: "passing".into(),
                    modify_index: at,
                },
            );
            st.checks_index = at;
        }
        let shared = self.shared.clone();
        let node_name: Arc<str> = node.into();
        let _guard = self.runtime.enter();
        let listener = TcpListener::from_std(std_listener)?;
        self.runtime
            .spawn(async move { serve(shared, addr, Some(listener), node_name).await });
        agents.insert(node.to_owned(), addr);
        self.shared.changed.notify_waiters();
        Ok(addr)
    }

    /// Sets the status of node `node`'s `serfHealth` check (`critical`: its agent is gone, as
    /// the servers see a machine that went away). Every instance on the node then has a
    /// critical check. Returns false for an unknown node.
    pub fn set_node_health(&self, node: &str, status: &str) -> bool {
        let mut st = self.shared.state.lock().unwrap();
        if !st.nodes.contains_key(node) {
            return false;
        }
        let at = st.bump();
        if let Some(n) = st.nodes.get_mut(node) {
            n.serf = status.to_owned();
            n.modify_index = at;
        }
        let names: Vec<String> = st
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            st.touch_check(&name, at);
        }
        st.checks_index = at;
        drop(st);
        self.shared.changed.notify_waiters();
        true
    }

    /// The node instance `service_id` is registered on.
    pub fn node_of(&self, service_id: &str) -> Option<String> {
        let st = self.shared.state.lock().unwrap();
        st.services.get(service_id).map(|s| s.node.clone())
    }

    /// The `DeregisterCriticalServiceAfter` of each check of instance `service_id`, as
    /// registered (`None` for a check without one).
    pub fn deregister_critical_after(&self, service_id: &str) -> Option<Vec<Option<Duration>>> {
        let st = self.shared.state.lock().unwrap();
        st.services
            .get(service_id)
            .map(|s| s.checks.iter().map(|c| c.deregister_after).collect())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuses connections (and drops the open ones) while `down`. Returns once the listener is
    /// closed (or open again).
    pub fn set_unreachable(&self, down: bool) {
        self.shared.down.send_replace(down);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while *self.shared.listening.borrow() == down && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Delays every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Starts the index again from a low value (as a datacenter restored into a new cluster):
    /// every entry keeps its data but gets a fresh, small index. Wakes every blocked query.
    pub fn reset_index(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.index = 0;
        let keys: Vec<String> = st.kv.keys().cloned().collect();
        for k in keys {
            let i = st.bump();
            let e = st.kv.get_mut(&k).expect("listed");
            e.create_index = i;
            e.modify_index = i;
        }
        st.tombstones.clear();
        st.kv_index = st.index.max(1);
        st.service_index.clear();
        let ids: Vec<String> = st.services.keys().cloned().collect();
        for id in ids {
            let i = st.bump();
            let s = st.services.get_mut(&id).expect("listed");
            s.create_index = i;
            s.modify_index = i;
            for c in &mut s.checks {
                c.create_index = i;
                c.modify_index = i;
            }
            let name = s.name.clone();
            st.touch_service(&name, i);
        }
        st.catalog_index = st.index.max(1);
        st.checks_index = st.index.max(1);
        drop(st);
        self.shared.changed.notify_waiters();
    }

    /// Sets the status of every check of service instance `service_id` (`passing`, `warning`,
    /// `critical`) until its next probe says otherwise. Returns false for an unknown id.
    pub fn force_check(&self, service_id: &str, status: &str) -> bool {
        force_check(&self.shared, service_id, status, "set by the test")
    }

    /// The current raft index.
    pub fn index(&self) -> u64 {
        self.shared.state.lock().unwrap().index
    }

    /// The ids of the registered service instances.
    pub fn service_ids(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .unwrap()
            .services
            .keys()
            .cloned()
            .collect()
    }

    /// Tags of a registered instance.
    pub fn tags(&self, service_id: &str) -> Option<Vec<String>> {
        let st = self.shared.state.lock().unwrap();
        st.services.get(service_id).map(|s| s.tags.clone())
    }

    /// A KV value, as stored.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        let st = self.shared.state.lock().unwrap();
        st.kv.get(key).map(|e| e.value.clone())
    }

    /// One HTTP/1.1 request to the double over loopback (as any client sends it), for test
    /// fixtures: `(status, body)`.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let token = token
            .map(|t| format!("X-Consul-Token: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{token}Content-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ConsulDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections while up; when the down switch flips, drops the listener and every open
/// connection, and binds the same address again when it flips back.
async fn serve(
    shared: Arc<Shared>,
    addr: SocketAddr,
    mut listener: Option<TcpListener>,
    node: Arc<str>,
) {
    let mut down = shared.down.subscribe();
    loop {
        if *down.borrow_and_update() {
            drop(listener.take());
            shared.listening.send_replace(false);
            if down.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        shared.listening.send_replace(true);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let s = shared.clone();
                    let node = node.clone();
                    conns.spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let svc = hyper::service::service_fn(move |req| {
                            let s = s.clone();
                            let node = node.clone();
                            async move { Ok::<_, Infallible>(handle(s, req, &node).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    });
                }
                _ = down.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // Down: the JoinSet drop aborts every connection; the listener closes.
        conns.abort_all();
        drop(l);
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn json_reply(value: &Value, index: u64) -> Resp {
    let mut r = reply(StatusCode::OK, value.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    query_meta(&mut r, index);
    r
}

fn query_meta(r: &mut Resp, index: u64) {
    let h = r.headers_mut();
    h.insert("x-consul-index", index.max(1).to_string().parse().unwrap());
    h.insert("x-consul-knownleader", "true".parse().unwrap());
    h.insert("x-consul-lastcontact", "0".parse().unwrap());
}

fn query_params(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn flag(params: &[(String, String)], name: &str) -> bool {
    param(params, name).is_some_and(|v| v != "false" && v != "0")
}

/// Parses Consul's durations: `10s`, `5m`, `250ms`, `1m30s`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
    }
    Some(total)
}

enum Who {
    /// ACLs are disabled.
    Anyone,
    Token(Policy),
}

impl Who {
    fn key(&self, key: &str) -> Access {
        match self {
            Who::Anyone => Access::Write,
            Who::Token(p) => p.key(key),
        }
    }

    fn service(&self, name: &str) -> Access {
        match self {
            Who::Anyone => Access::Write,
            Who::Token(p) => p.service(name),
        }
    }
}

fn denied(permission: &str, on: &str) -> Resp {
    reply(
        StatusCode::FORBIDDEN,
        format!("Permission denied: token lacks permission '{permission}' on \"{on}\""),
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>, node: &str) -> Resp {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let delay = *shared.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let params = query_params(&req);
    if let Some(dc) = param(&params, "dc")
        && !dc.is_empty()
        && dc != DATACENTER
    {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter");
    }
    // The token: header, bearer, then query parameter.
    let token = req
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .or_else(|| param(&params, "token").map(str::to_owned))
        .filter(|t| !t.is_empty());
    let who = match (&shared.tokens, token) {
        (None, _) => Who::Anyone,
        (Some(tokens), Some(t)) => match tokens.get(&t) {
            Some(p) => Who::Token(p.clone()),
            None => return reply(StatusCode::FORBIDDEN, "ACL not found"),
        },
        // The anonymous token: no rights.
        (Some(_), None) => Who::Token(Policy::default()),
    };
    let method = req.method().clone();
    let path = percent_decode(req.uri().path());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "cannot read the request body"),
    };
    let not_allowed = || {
        reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        )
    };
    if path == "/v1/agent/service/register" {
        if method != Method::PUT {
            return not_allowed();
        }
        return register(&shared, &who, &params, &body, node);
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
        if method != Method::PUT {
            return not_allowed();
        }
        return deregister(&shared, &who, id, node);
    }
    if path == "/v1/agent/services" {
        if method != Method::GET {
            return not_allowed();
        }
        return agent_services(&shared, &who, node);
    }
    if path == "/v1/agent/self" {
        if method != Method::GET {
            return not_allowed();
        }
        return json_reply(
            &json!({
                "Config": {"Datacenter": DATACENTER, "NodeName": node, "Server": node == NODE},
                "Member": {"Name": node, "Addr": "127.0.0.1", "Status": 1},
            }),
            1,
        );
    }
    if path == "/v1/catalog/deregister" {
        if method != Method::PUT {
            return not_allowed();
        }
        return catalog_deregister(&shared, &who, &body);
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        if method != Method::GET {
            return not_allowed();
        }
        return health_service(&shared, &who, name, &params).await;
    }
    if let Some(state) = path.strip_prefix("/v1/health/state/") {
        if method != Method::GET {
            return not_allowed();
        }
        return health_state(&shared, &who, state, &params).await;
    }
    if path == "/v1/catalog/services" {
        if method != Method::GET {
            return not_allowed();
        }
        return catalog_services(&shared, &who, &params).await;
    }
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        return match method {
            Method::GET => kv_get(&shared, &who, key, &params).await,
            Method::PUT => kv_put(&shared, &who, key, &params, body),
            Method::DELETE => kv_delete(&shared, &who, key, &params),
            _ => not_allowed(),
        };
    }
    if path == "/v1/status/leader" {
        return reply(StatusCode::OK, format!("\"{}\"", "127.0.0.1:8300"));
    }
    reply(StatusCode::NOT_FOUND, "")
}

/// Blocks (as a Consul server does) while the result's index is not above `index`, up to `wait`
/// plus jitter; then answers the current result.
async fn blocking<F>(shared: &Shared, params: &[(String, String)], mut query: F) -> Resp
where
    F: FnMut(&State) -> (Value, u64),
{
    let min_index: u64 = match param(params, "index").map(str::parse) {
        None => 0,
        Some(Ok(i)) => i,
        Some(Err(_)) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "Invalid index: must be an unsigned integer",
            );
        }
    };
    let wait = match param(params, "wait") {
        None => DEFAULT_WAIT,
        Some(w) => match parse_duration(w) {
            Some(d) => d.min(MAX_WAIT),
            None => return reply(StatusCode::BAD_REQUEST, "Invalid wait time"),
        },
    };
    let jitter = wait.mul_f64(fastrand::f64() / 16.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let result = {
            let st = shared.state.lock().unwrap();
            query(&st)
        };
        let (value, index) = result;
        let index = index.max(1);
        if min_index == 0 || index > min_index || tokio::time::Instant::now() >= deadline {
            return json_or_404(value, index);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let st = shared.state.lock().unwrap();
            let (v, i) = query(&st);
            return json_or_404(v, i.max(1));
        }
    }
}

/// `Value::Null` stands for "not found" (a KV read of a missing key): 404 with the index.
fn json_or_404(value: Value, index: u64) -> Resp {
    match value {
        Value::Null => {
            let mut r = reply(StatusCode::NOT_FOUND, "");
            query_meta(&mut r, index);
            r
        }
        // A raw KV read.
        Value::Object(ref o) if o.contains_key("__raw") => {
            let raw = o["__raw"].as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .unwrap_or_default();
            let mut r = reply(StatusCode::OK, bytes);
            query_meta(&mut r, index);
            r
        }
        v => json_reply(&v, index),
    }
}

/// Case-insensitive field lookup (Consul's decoder accepts `ID`, `Id`, `id`).
fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn str_field(obj: &Value, name: &str) -> Option<String> {
    field(obj, name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

fn register(
    shared: &Arc<Shared>,
    who: &Who,
    params: &[(String, String)],
    body: &[u8],
    node: &str,
) -> Resp {
    let _ = params;
    let def: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "Request decode failed: not an object",
            );
        }
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("Request decode failed: {e}"),
            );
        }
    };
    let Some(name) = str_field(&def, "Name") else {
        return reply(StatusCode::BAD_REQUEST, "Missing service name");
    };
    if who.service(&name) < Access::Write {
        return denied("service:write", &name);
    }
    let id = str_field(&def, "ID").unwrap_or_else(|| name.clone());
    let tags: Vec<String> = field(&def, "Tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let meta: BTreeMap<String, String> = field(&def, "Meta")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let port = match field(&def, "Port") {
        None | Some(Value::Null) => 0,
        Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) => p,
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Request decode failed: invalid Port",
                );
            }
        },
    };
    let address = str_field(&def, "Address").unwrap_or_default();
    let mut defs: Vec<&Value> = Vec::new();
    if let Some(c) = field(&def, "Check").filter(|c| !c.is_null()) {
        defs.push(c);
    }
    if let Some(cs) = field(&def, "Checks").and_then(Value::as_array) {
        defs.extend(cs.iter());
    }
    let numbered = defs.len() > 1;
    let mut checks = Vec::new();
    for (i, c) in defs.iter().enumerate() {
        let probe = if let Some(url) = str_field(c, "HTTP") {
            Probe::Http(url)
        } else if let Some(addr) = str_field(c, "TCP") {
            Probe::Tcp(addr)
        } else if str_field(c, "TTL").is_some() {
            Probe::None
        } else {
            return reply(
                StatusCode::BAD_REQUEST,
                "Invalid check: must include one of HTTP, TCP or TTL",
            );
        };
        let interval = match str_field(c, "Interval").map(|s| parse_duration(&s)) {
            Some(Some(d)) if !d.is_zero() => d,
            _ if matches!(probe, Probe::None) => Duration::ZERO,
            _ => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks",
                );
            }
        };
        let timeout = str_field(c, "Timeout")
            .and_then(|s| parse_duration(&s))
            .unwrap_or(Duration::from_secs(10));
        let check_id = str_field(c, "CheckID").unwrap_or_else(|| {
            if numbered {
                format!("service:{id}:{}", i + 1)
            } else {
                format!("service:{id}")
            }
        });
        let status = str_field(c, "Status").unwrap_or_else(|| "critical".into());
        if !matches!(status.as_str(), "passing" | "warning" | "critical") {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("Invalid check: status `{status}` is not passing, warning or critical"),
            );
        }
        let deregister_after = match str_field(c, "DeregisterCriticalServiceAfter") {
            None => None,
            Some(d) => match parse_duration(&d) {
                Some(d) => Some(d),
                None => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("Invalid check: DeregisterCriticalServiceAfter `{d}`"),
                    );
                }
            },
        };
        checks.push(Check {
            deregister_after,
            id: check_id,
            name: str_field(c, "Name").unwrap_or_else(|| format!("Service '{name}' check")),
            status,
            output: String::new(),
            probe,
            interval,
            timeout,
            create_index: 0,
            modify_index: 0,
        });
    }
    let mut st = shared.state.lock().unwrap();
    let at = st.bump();
    st.generation += 1;
    let generation = st.generation;
    if let Some(old) = st.services.get(&id)
        && old.node != node
    {
        // Service ids are unique per node in Consul; the double keeps one id space for the
        // datacenter (lane's ids name the lane and the service, so they never meet).
        let other = old.node.clone();
        drop(st);
        return reply(
            StatusCode::CONFLICT,
            format!("the double keeps service ids unique: {id} is registered on node {other}"),
        );
    }
    let create_index = st.services.get(&id).map(|s| s.create_index).unwrap_or(at);
    if let Some(old) = st.services.get(&id)
        && old.name != name
    {
        let old_name = old.name.clone();
        st.touch_service(&old_name, at);
    }
    for c in &mut checks {
        c.create_index = at;
        c.modify_index = at;
    }
    let svc = Service {
        id: id.clone(),
        name: name.clone(),
        tags,
        address,
        port,
        meta,
        checks: checks.clone(),
        create_index,
        modify_index: at,
        generation,
        node: node.to_owned(),
    };
    st.services.insert(id.clone(), svc);
    st.touch_service(&name, at);
    drop(st);
    shared.changed.notify_waiters();
    for c in checks {
        if !matches!(c.probe, Probe::None) {
            tokio::spawn(run_probe(shared.clone(), id.clone(), generation, c));
        }
    }
    reply(StatusCode::OK, "")
}

fn deregister(shared: &Arc<Shared>, who: &Who, id: &str, node: &str) -> Resp {
    let mut st = shared.state.lock().unwrap();
    // An agent knows only the services registered through it.
    let Some(name) = st
        .services
        .get(id)
        .filter(|s| s.node == node)
        .map(|s| s.name.clone())
    else {
        return reply(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the \
                 service name."
            ),
        );
    };
    if who.service(&name) < Access::Write {
        return denied("service:write", &name);
    }
    st.services.remove(id);
    let at = st.bump();
    st.touch_service(&name, at);
    drop(st);
    shared.changed.notify_waiters();
    reply(StatusCode::OK, "")
}

/// `GET /v1/agent/services`: the services registered through this agent (its node), by id, as
/// the agent answers them (filtered by what the token may read).
fn agent_services(shared: &Shared, who: &Who, node: &str) -> Resp {
    let st = shared.state.lock().unwrap();
    let mut out = serde_json::Map::new();
    for s in st.services.values().filter(|s| s.node == node) {
        if who.service(&s.name) < Access::Read {
            continue;
        }
        let mut v = service_json(s);
        if let Value::Object(o) = &mut v {
            o.remove("CreateIndex");
            o.remove("ModifyIndex");
            o.insert("Datacenter".into(), DATACENTER.into());
        }
        out.insert(s.id.clone(), v);
    }
    let mut r = reply(StatusCode::OK, Value::Object(out).to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// `PUT /v1/catalog/deregister` (`Node`, and `ServiceID` or `CheckID`, or neither for the whole
/// node): removes entries from the catalog directly, as Consul documents for external services
/// and nodes whose agent is gone (a live agent would register its services again on its next
/// anti-entropy sync; the double does not model that sync). Answers `true`, also for what does
/// not exist.
fn catalog_deregister(shared: &Shared, who: &Who, body: &[u8]) -> Resp {
    let def: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return reply(StatusCode::BAD_REQUEST, "Request decode failed"),
    };
    let Some(node) = str_field(&def, "Node") else {
        return reply(StatusCode::BAD_REQUEST, "Must provide node");
    };
    let service_id = str_field(&def, "ServiceID");
    let check_id = str_field(&def, "CheckID");
    let mut st = shared.state.lock().unwrap();
    let doomed: Vec<(String, String)> = st
        .services
        .values()
        .filter(|s| s.node == node)
        .filter(|s| match (&service_id, &check_id) {
            (Some(id), _) => &s.id == id,
            (None, Some(_)) => false,
            (None, None) => true,
        })
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    if let Some((_, name)) = doomed.iter().find(|(_, n)| who.service(n) < Access::Write) {
        return denied("service:write", name);
    }
    if let (None, Some(check)) = (&service_id, &check_id) {
        let at = st.bump();
        let mut touched = Vec::new();
        for s in st.services.values_mut().filter(|s| s.node == node) {
            let before = s.checks.len();
            s.checks.retain(|c| &c.id != check);
            if s.checks.len() != before {
                s.generation += 1;
                touched.push(s.name.clone());
            }
        }
        for name in touched {
            st.touch_check(&name, at);
        }
    } else {
        if service_id.is_none() {
            st.nodes.remove(&node);
        }
        let at = st.bump();
        for (id, name) in doomed {
            st.services.remove(&id);
            st.touch_service(&name, at);
        }
        st.checks_index = at;
    }
    drop(st);
    shared.changed.notify_waiters();
    json_bool(true)
}

fn force_check(shared: &Shared, service_id: &str, status: &str, output: &str) -> bool {
    let mut st = shared.state.lock().unwrap();
    let Some(svc) = st.services.get(service_id) else {
        return false;
    };
    if svc
        .checks
        .iter()
        .all(|c| c.status == status && c.output == output)
    {
        return true;
    }
    let name = svc.name.clone();
    let at = st.bump();
    let svc = st.services.get_mut(service_id).expect("present");
    for c in &mut svc.checks {
        c.status = status.to_owned();
        c.output = output.to_owned();
        c.modify_index = at;
    }
    st.touch_check(&name, at);
    drop(st);
    shared.changed.notify_waiters();
    true
}

/// Runs one check on its interval until its service is deregistered or replaced. As Consul's
/// agent does, the first run comes after a random stagger within the interval (until then the
/// check keeps the status it was registered with).
async fn run_probe(shared: Arc<Shared>, service_id: String, generation: u64, check: Check) {
    tokio::time::sleep(check.interval.mul_f64(fastrand::f64())).await;
    let mut critical_since: Option<tokio::time::Instant> = None;
    loop {
        let (status, output) = match &check.probe {
            Probe::Http(url) => http_probe(url, check.timeout).await,
            Probe::Tcp(addr) => tcp_probe(addr, check.timeout).await,
            Probe::None => return,
        };
        {
            let mut st = shared.state.lock().unwrap();
            let Some(svc) = st.services.get(&service_id) else {
                return;
            };
            if svc.generation != generation {
                return;
            }
            let name = svc.name.clone();
            // The agent's reaper: critical for `DeregisterCriticalServiceAfter` → deregistered.
            if status == "critical" {
                let since = *critical_since.get_or_insert_with(tokio::time::Instant::now);
                if check
                    .deregister_after
                    .is_some_and(|after| since.elapsed() >= after)
                {
                    st.services.remove(&service_id);
                    let at = st.bump();
                    st.touch_service(&name, at);
                    drop(st);
                    shared.changed.notify_waiters();
                    return;
                }
            } else {
                critical_since = None;
            }
            let changed = svc
                .checks
                .iter()
                .any(|c| c.id == check.id && c.status != status);
            if changed {
                let at = st.bump();
                let svc = st.services.get_mut(&service_id).expect("present");
                for c in svc.checks.iter_mut().filter(|c| c.id == check.id) {
                    c.status = status.to_owned();
                    c.output = output.clone();
                    c.modify_index = at;
                }
                st.touch_check(&name, at);
                drop(st);
                shared.changed.notify_waiters();
            }
        }
        tokio::time::sleep(check.interval).await;
    }
}

/// Consul's HTTP check: 2xx passing, 429 warning, anything else (or no answer) critical.
async fn http_probe(url: &str, timeout: Duration) -> (&'static str, String) {
    let Some(rest) = url.strip_prefix("http://") else {
        return ("critical", format!("unsupported check URL {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Consul Health Check\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok::<u16, std::io::Error>(code)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(code)) if (200..300).contains(&code) => {
            ("passing", format!("HTTP GET {url}: {code}"))
        }
        Ok(Ok(429)) => ("warning", format!("HTTP GET {url}: 429 Too Many Requests")),
        Ok(Ok(code)) => ("critical", format!("HTTP GET {url}: {code}")),
        Ok(Err(e)) => ("critical", format!("Get \"{url}\": {e}")),
        Err(_) => ("critical", format!("Get \"{url}\": timeout")),
    }
}

async fn tcp_probe(addr: &str, timeout: Duration) -> (&'static str, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ("passing", format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => ("critical", format!("dial tcp {addr}: {e}")),
        Err(_) => ("critical", format!("dial tcp {addr}: timeout")),
    }
}

fn node_json(node: &str) -> Value {
    json!({
        "ID": format!("00000000-0000-0000-0000-{:012x}", fastrand_of(node)),
        "Node": node,
        "Address": "127.0.0.1",
        "Datacenter": DATACENTER,
        "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
        "Meta": {},
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })
}

fn service_json(s: &Service) -> Value {
    json!({
        "ID": s.id,
        "Service": s.name,
        "Tags": s.tags,
        "Address": s.address,
        "Meta": s.meta,
        "Port": s.port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": false,
        "CreateIndex": s.create_index,
        "ModifyIndex": s.modify_index,
    })
}

/// A stable small number for a node's id.
fn fastrand_of(node: &str) -> u64 {
    node.bytes()
        .fold(1u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        & 0xffff_ffff_ffff
}

fn checks_json(s: &Service, serf: &str) -> Value {
    let mut checks = vec![json!({
        "Node": s.node,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": serf,
        "Notes": "",
        "Output": if serf == "passing" { "Agent alive and reachable" } else { "Agent not live or unreachable" },
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })];
    for c in &s.checks {
        let kind = match c.probe {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::None => "ttl",
        };
        checks.push(json!({
            "Node": s.node,
            "CheckID": c.id,
            "Name": c.name,
            "Status": c.status,
            "Notes": "",
            "Output": c.output,
            "ServiceID": s.id,
            "ServiceName": s.name,
            "ServiceTags": s.tags,
            "Type": kind,
            "Interval": format!("{}s", c.interval.as_secs_f64()),
            "CreateIndex": c.create_index,
            "ModifyIndex": c.modify_index,
        }));
    }
    Value::Array(checks)
}

async fn health_service(
    shared: &Shared,
    who: &Who,
    name: &str,
    params: &[(String, String)],
) -> Resp {
    let passing = flag(params, "passing");
    let tags: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let filter = match param(params, "filter").map(Filter::parse) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("Failed to create boolean expression evaluator: {e}"),
            );
        }
    };
    let readable = who.service(name) >= Access::Read;
    let name = name.to_owned();
    blocking(shared, params, |st| {
        let index = st
            .service_index
            .get(&name)
            .copied()
            .unwrap_or(st.catalog_index);
        if !readable {
            return (json!([]), index);
        }
        let entries: Vec<Value> = st
            .services
            .values()
            .filter(|s| s.name == name)
            .filter(|s| tags.iter().all(|t| s.tags.contains(t)))
            .filter(|s| {
                !passing
                    || (st.serf(&s.node) == "passing"
                        && s.checks.iter().all(|c| c.status == "passing"))
            })
            .filter(|s| filter.as_ref().is_none_or(|f| f.matches(s)))
            .map(|s| {
                json!({
                    "Node": node_json(&s.node),
                    "Service": service_json(s),
                    "Checks": checks_json(s, st.serf(&s.node)),
                })
            })
            .collect();
        (Value::Array(entries), index)
    })
    .await
}

/// `GET /v1/health/state/<state>`: the checks in `state` (`any`, `passing`, `warning`,
/// `critical`), the node's included, of the services the token may read.
async fn health_state(
    shared: &Shared,
    who: &Who,
    state: &str,
    params: &[(String, String)],
) -> Resp {
    if !matches!(state, "any" | "passing" | "warning" | "critical") {
        return reply(StatusCode::BAD_REQUEST, "Invalid check state");
    }
    let who_services: Vec<(String, Access)> = match who {
        Who::Anyone => vec![(String::new(), Access::Write)],
        Who::Token(p) => p.services.clone(),
    };
    let state = state.to_owned();
    blocking(shared, params, |st| {
        let mut out = Vec::new();
        // Each node's own check.
        for (name, n) in &st.nodes {
            if state == "any" || state == n.serf {
                let placeholder = Service {
                    node: name.clone(),
                    ..Service::placeholder()
                };
                let mut c = checks_json(&placeholder, &n.serf)[0].clone();
                c["ModifyIndex"] = n.modify_index.into();
                out.push(c);
            }
        }
        for s in st.services.values() {
            if Policy::access(&who_services, &s.name) < Access::Read {
                continue;
            }
            if let Value::Array(checks) = checks_json(s, st.serf(&s.node)) {
                out.extend(
                    checks
                        .into_iter()
                        .skip(1)
                        .filter(|c| state == "any" || c["Status"] == state.as_str()),
                );
            }
        }
        (Value::Array(out), st.checks_index)
    })
    .await
}

async fn catalog_services(shared: &Shared, who: &Who, params: &[(String, String)]) -> Resp {
    let who_services: Vec<(String, Access)> = match who {
        Who::Anyone => vec![(String::new(), Access::Write)],
        Who::Token(p) => p.services.clone(),
    };
    blocking(shared, params, |st| {
        let mut out = serde_json::Map::new();
        for s in st.services.values() {
            if Policy::access(&who_services, &s.name) < Access::Read {
                continue;
            }
            let entry = out
                .entry(s.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(tags) = entry {
                for t in &s.tags {
                    let t = Value::String(t.clone());
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
            }
        }
        (Value::Object(out), st.catalog_index)
    })
    .await
}

fn kv_json(key: &str, e: &KvEntry) -> Value {
    json!({
        "LockIndex": 0,
        "Key": key,
        "Flags": e.flags,
        "Value": if e.value.is_empty() { Value::Null } else {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
        },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

async fn kv_get(shared: &Shared, who: &Who, key: &str, params: &[(String, String)]) -> Resp {
    let recurse = flag(params, "recurse");
    let keys_only = param(params, "keys").is_some();
    let raw = flag(params, "raw");
    let separator = param(params, "separator").map(str::to_owned);
    if !recurse && !keys_only && who.key(key) < Access::Read {
        return denied("key:read", key);
    }
    let key = key.to_owned();
    let policy_keys: Vec<(String, Access)> = match who {
        Who::Anyone => vec![(String::new(), Access::Write)],
        Who::Token(p) => p.keys.clone(),
    };
    blocking(shared, params, move |st| {
        if recurse || keys_only {
            let matched: Vec<(&String, &KvEntry)> = st
                .kv
                .range(key.clone()..)
                .take_while(|(k, _)| k.starts_with(key.as_str()))
                .filter(|(k, _)| Policy::access(&policy_keys, k) >= Access::Read)
                .collect();
            let tomb = st
                .tombstones
                .range(key.clone()..)
                .take_while(|(k, _)| k.starts_with(key.as_str()))
                .map(|(_, i)| *i)
                .max()
                .unwrap_or(0);
            let index = matched
                .iter()
                .map(|(_, e)| e.modify_index)
                .max()
                .unwrap_or(0)
                .max(tomb);
            let index = if index == 0 { st.kv_index } else { index };
            if matched.is_empty() {
                return (Value::Null, index);
            }
            let value = if keys_only {
                let mut names: Vec<String> = Vec::new();
                for (k, _) in &matched {
                    let rest = &k[key.len()..];
                    let name = match separator
                        .as_deref()
                        .and_then(|s| rest.find(s).map(|i| (i, s)))
                    {
                        Some((i, s)) => format!("{key}{}", &rest[..i + s.len()]),
                        None => (*k).clone(),
                    };
                    if names.last() != Some(&name) {
                        names.push(name);
                    }
                }
                json!(names)
            } else {
                Value::Array(matched.iter().map(|(k, e)| kv_json(k, e)).collect())
            };
            return (value, index);
        }
        match st.kv.get(&key) {
            Some(e) if raw => (
                json!({"__raw": base64::engine::general_purpose::STANDARD.encode(&e.value)}),
                e.modify_index,
            ),
            Some(e) => (json!([kv_json(&key, e)]), e.modify_index),
            None => {
                let index = st.tombstones.get(&key).copied().unwrap_or(st.kv_index);
                (Value::Null, index)
            }
        }
    })
    .await
}

/// `?cas=`: `Err` when it is no unsigned integer.
fn cas_param(params: &[(String, String)]) -> Result<Option<u64>, std::num::ParseIntError> {
    param(params, "cas").map(str::parse).transpose()
}

fn bad_cas() -> Resp {
    reply(
        StatusCode::BAD_REQUEST,
        "Invalid CAS index: must be an unsigned integer",
    )
}

fn kv_put(shared: &Shared, who: &Who, key: &str, params: &[(String, String)], body: Bytes) -> Resp {
    if key.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "Missing key name");
    }
    if who.key(key) < Access::Write {
        return denied("key:write", key);
    }
    if body.len() > 512 * 1024 {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large, max size: 524288 bytes",
        );
    }
    let Ok(cas) = cas_param(params) else {
        return bad_cas();
    };
    let flags = match param(params, "flags").map(str::parse::<u64>) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(_)) => return reply(StatusCode::BAD_REQUEST, "Invalid flags"),
    };
    let mut st = shared.state.lock().unwrap();
    let current = st.kv.get(key).map(|e| e.modify_index);
    let ok = match cas {
        None => true,
        // 0: only when the key does not exist.
        Some(0) => current.is_none(),
        Some(i) => current == Some(i),
    };
    if ok {
        let at = st.bump();
        let create_index = st.kv.get(key).map(|e| e.create_index).unwrap_or(at);
        let flags = flags
            .or_else(|| st.kv.get(key).map(|e| e.flags))
            .unwrap_or(0);
        st.kv.insert(
            key.to_owned(),
            KvEntry {
                value: body.to_vec(),
                flags,
                create_index,
                modify_index: at,
            },
        );
        st.tombstones.remove(key);
        st.kv_index = at;
        drop(st);
        shared.changed.notify_waiters();
    }
    json_bool(ok)
}

fn json_bool(ok: bool) -> Resp {
    let mut r = reply(StatusCode::OK, if ok { "true" } else { "false" });
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn kv_delete(shared: &Shared, who: &Who, key: &str, params: &[(String, String)]) -> Resp {
    let recurse = flag(params, "recurse");
    let Ok(cas) = cas_param(params) else {
        return bad_cas();
    };
    if who.key(key) < Access::Write {
        return denied("key:write", key);
    }
    let mut st = shared.state.lock().unwrap();
    let targets: Vec<String> = if recurse {
        st.kv
            .range(key.to_owned()..)
            .take_while(|(k, _)| k.starts_with(key))
            .map(|(k, _)| k.clone())
            .collect()
    } else {
        st.kv
            .contains_key(key)
            .then(|| key.to_owned())
            .into_iter()
            .collect()
    };
    let ok = match cas {
        None => true,
        // Unlike PUT, a 0 index deletes nothing.
        Some(0) => false,
        Some(i) => st.kv.get(key).map(|e| e.modify_index) == Some(i),
    };
    if ok && !targets.is_empty() {
        let at = st.bump();
        for k in targets {
            st.kv.remove(&k);
            st.tombstones.insert(k, at);
        }
        st.kv_index = at;
        drop(st);
        shared.changed.notify_waiters();
    }
    json_bool(ok)
}

/// The subset of Consul's filter language the double understands.
#[derive(Debug, Clone)]
pub struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone)]
enum Clause {
    Contains {
        selector: String,
        value: String,
    },
    Eq {
        selector: String,
        value: String,
        negate: bool,
    },
}

impl Filter {
    /// Parses `and`-joined clauses: `Sel contains "v"`, `"v" in Sel`, `Sel == "v"`, `Sel != "v"`.
    pub fn parse(s: &str) -> Result<Filter, String> {
        let mut clauses = Vec::new();
        for part in s.split(" and ") {
            let part = part.trim();
            let unquote = |v: &str| -> Result<String, String> {
                let v = v.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('`').and_then(|v| v.strip_suffix('`')))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("1:1: expected a quoted value, found `{v}`"))
            };
            let clause = if let Some((sel, v)) = part.split_once(" contains ") {
                Clause::Contains {
                    selector: sel.trim().to_owned(),
                    value: unquote(v)?,
                }
            } else if let Some((v, sel)) = part.split_once(" in ") {
                Clause::Contains {
                    selector: sel.trim().to_owned(),
                    value: unquote(v)?,
                }
            } else if let Some((sel, v)) = part.split_once("!=") {
                Clause::Eq {
                    selector: sel.trim().to_owned(),
                    value: unquote(v)?,
                    negate: true,
                }
            } else if let Some((sel, v)) = part.split_once("==") {
                Clause::Eq {
                    selector: sel.trim().to_owned(),
                    value: unquote(v)?,
                    negate: false,
                }
            } else {
                return Err(format!("1:1: no match operator in `{part}`"));
            };
            let sel = match &clause {
                Clause::Contains { selector, .. } | Clause::Eq { selector, .. } => selector,
            };
            if !known_selector(sel) {
                return Err(format!("Selector \"{sel}\" is not valid"));
            }
            clauses.push(clause);
        }
        Ok(Filter { clauses })
    }

    fn matches(&self, s: &Service) -> bool {
        self.clauses.iter().all(|c| match c {
            Clause::Contains { selector, value } => {
                if selector == "Service.Tags" {
                    s.tags.contains(value)
                } else {
                    scalar(s, selector).is_some_and(|v| v.contains(value.as_str()))
                }
            }
            Clause::Eq {
                selector,
                value,
                negate,
            } => (scalar(s, selector).as_deref() == Some(value.as_str())) != *negate,
        })
    }
}

fn known_selector(sel: &str) -> bool {
    matches!(
        sel,
        "Service.ID"
            | "Service.Service"
            | "Service.Tags"
            | "Service.Address"
            | "Service.Port"
            | "Node.Node"
    ) || sel
        .strip_prefix("Service.Meta.")
        .is_some_and(|k| !k.is_empty())
}

fn scalar(s: &Service, sel: &str) -> Option<String> {
    Some(match sel {
        "Service.ID" => s.id.clone(),
        "Service.Service" => s.name.clone(),
        "Service.Address" => s.address.clone(),
        "Service.Port" => s.port.to_string(),
        "Node.Node" => s.node.clone(),
        other => s.meta.get(other.strip_prefix("Service.Meta.")?)?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_consul_writes_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5 minutes"), None);
    }

    #[test]
    fn filters_parse_and_refuse_what_they_do_not_know() {
        assert!(
            Filter::parse(r#"Service.Tags contains "lane=x" and Service.Meta.owner == "a""#)
                .is_ok()
        );
        assert!(Filter::parse(r#""lane=x" in Service.Tags"#).is_ok());
        assert!(Filter::parse(r#"Service.Nope == "x""#).is_err());
        assert!(Filter::parse("Service.ID").is_err());
        assert!(Filter::parse("Service.ID == x").is_err());
    }

    #[test]
    fn the_longest_policy_prefix_wins() {
        let p = Policy {
            keys: vec![
                ("".into(), Access::Read),
                ("gaia-lane/".into(), Access::Write),
            ],
            services: vec![],
        };
        assert_eq!(p.key("gaia-lane/lanes/x"), Access::Write);
        assert_eq!(p.key("other"), Access::Read);
        assert_eq!(p.service("gaia.a.b"), Access::Deny);
    }
}
