//! `lane-router`: the lane-aware reverse proxy (HTTP/1.1 and h2c on one listener) and the `lane proxy`
//! forward proxy that stamps the lane header on a developer's own requests.
//!
//! A request for `<proc>.<app>.localhost[:port]` is for service `<app>.<proc>`. Its lane value comes
//! from the lane header (`x-lane` by default) or the `lane` entry of `baggage`
//! ([`lane_core::header::lane_value`]); [`lane_core::RoutingTable::route`] picks the lane and its
//! targets, and the router balances round-robin across them. Every proxied response gets
//! `x-lane-served-by: <app>.<proc>@<lane>` prepended to whatever the upstream already said, so a
//! multi-hop response lists the outermost hop first.
//!
//! **Architecture invariant:** the router makes no routing decision of its own; the table's
//! [`route`](lane_core::RoutingTable::route) does. Each request takes one `Arc` snapshot of the table,
//! so a [`TableHandle::update`] affects the next request and never an in-flight one.

mod edge;
mod forward;
mod h1;
mod h2idle;
mod host;
mod limits;
pub mod proxy;
pub mod registry;
mod uri;
mod workers;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http::header::{self, Entry, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use lane_core::{Decision, LaneRef, LaneValue, ServiceId};

use crate::forward::{
    Clients, RouterBody, error_chain, header_text, strip_hop_by_hop, text_response,
};
use crate::host::HostKind;

pub use crate::host::{SERVICE_DOMAIN, is_loopback_name};
pub use crate::limits::{LIMIT_VARS, Limits, raise_open_file_limit};

/// The routing table the router serves from: instances are socket addresses.
pub type Table = lane_core::RoutingTable<SocketAddr>;

/// The header the router adds to every proxied response.
pub const SERVED_BY_HEADER: HeaderName = HeaderName::from_static(SERVED_BY);
const SERVED_BY: &str = "x-lane-served-by";
/// The header the router adds when the request's lane value was invalid (and it went to baseline).
pub const INVALID_HEADER: HeaderName = HeaderName::from_static(INVALID);
const INVALID: &str = "x-lane-invalid";
/// Added to forwarded requests: the client's address appended (as Envoy, and so Istio, does).
const FORWARDED_FOR: &str = "x-forwarded-for";
/// Added to forwarded requests when the client did not say: the router speaks plain `http`.
const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// The default lane header.
pub const DEFAULT_LANE_HEADER: HeaderName = HeaderName::from_static("x-lane");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The header that carries the lane id (`x-lane` by default). `baggage: lane=<id>` is read too.
    pub lane_header: HeaderName,
    /// Forward a request that carries the lane header with `baggage` saying the same lane
    /// (`lane=<id>` added, or put in place of a different one), so that services that propagate
    /// only OpenTelemetry baggage carry the lane on (`edge`; `docs/propagation.md`). Off by default.
    pub header_to_baggage: bool,
    /// Timeouts and the connection cap ([`Limits::from_env`] reads them from the environment).
    pub limits: Limits,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            lane_header: DEFAULT_LANE_HEADER,
            header_to_baggage: false,
            limits: Limits::default(),
        }
    }
}

/// Shared, swappable routing table. Cheap to clone. Updating never fails in-flight requests: each
/// request holds the snapshot it started with.
#[derive(Clone)]
pub struct TableHandle {
    current: Arc<RwLock<Arc<Table>>>,
    /// The registry that feeds the table, when one does.
    registry: Arc<RwLock<Option<registry::RegistryState>>>,
    /// What each instance speaks (`protocol` in its `lane.toml`), when its table source knows.
    protocols: Arc<RwLock<Arc<HashMap<SocketAddr, Protocol>>>>,
    /// Some instance speaks `grpc` (so HTTP/1.x requests must look their target up).
    any_h2: Arc<std::sync::atomic::AtomicBool>,
}

/// The protocol a service speaks (`protocol` in `lane.toml`): `http` services get HTTP/1.1
/// upstream, `grpc` services HTTP/2, whatever the client spoke.
pub use lane_core::manifest::Protocol;

impl TableHandle {
    pub fn new(table: Table) -> Self {
        TableHandle {
            current: Arc::new(RwLock::new(Arc::new(table))),
            registry: Arc::new(RwLock::new(None)),
            protocols: Arc::default(),
            any_h2: Arc::default(),
        }
    }

    /// Records whether the registry feeding the table answers (`/healthz`, `/metrics`).
    pub fn set_registry(&self, state: registry::RegistryState) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    /// The registry feeding the table, when one does.
    pub fn registry(&self) -> Option<registry::RegistryState> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Says what each instance speaks. An instance left out is spoken to in the client's own
    /// protocol (HTTP/1.x upstream for HTTP/1.x clients, h2 for h2c ones).
    pub fn set_protocols(&self, protocols: impl IntoIterator<Item = (SocketAddr, Protocol)>) {
        let protocols: Arc<HashMap<SocketAddr, Protocol>> =
            Arc::new(protocols.into_iter().collect());
        self.any_h2.store(
            protocols.values().any(|p| *p == Protocol::Grpc),
            Ordering::Relaxed,
        );
        let old = {
            let mut slot = self.protocols.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *slot, protocols)
        };
        drop(old);
    }

    /// Whether `target` speaks HTTP/2 only (`grpc`). One atomic load when no instance does.
    pub(crate) fn speaks_h2_only(&self, target: SocketAddr) -> bool {
        self.any_h2.load(Ordering::Relaxed) && self.protocol(target) == Some(Protocol::Grpc)
    }

    /// What `target` speaks, when known.
    pub fn protocol(&self, target: SocketAddr) -> Option<Protocol> {
        self.protocols
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target)
            .copied()
    }

    /// Replaces the table; the next request routes with it.
    pub fn update(&self, table: Table) {
        let table = Arc::new(table);
        let old = {
            let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *slot, table)
        };
        drop(old); // outside the lock: the last reference may free a large table
    }

    /// The table now in force.
    pub fn current(&self) -> Arc<Table> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Default for TableHandle {
    fn default() -> Self {
        TableHandle::new(Table::default())
    }
}

/// Requests routed so far to one service in one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficCount {
    pub service: ServiceId,
    /// The lane that served (after fallback), not the lane the request asked for.
    pub lane: LaneRef,
    pub requests: u64,
}

/// The lane router. Cheap to clone; clones share counters and the table.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    config: RouterConfig,
    table: TableHandle,
    clients: Clients,
    next: AtomicUsize,
    stats: Stats,
    /// Downstream connections open now.
    connections: AtomicUsize,
}

impl Router {
    pub fn new(config: RouterConfig, table: TableHandle) -> Router {
        Router {
            inner: Arc::new(Inner {
                table,
                clients: Clients::new(
                    hyper_util::client::legacy::connect::dns::GaiResolver::new(),
                    config.limits.connect_timeout,
                ),
                config,
                next: AtomicUsize::new(0),
                stats: Stats::new(),
                connections: AtomicUsize::new(0),
            }),
        }
    }

    /// The table handle this router reads.
    pub fn table(&self) -> &TableHandle {
        &self.inner.table
    }

    /// Serves until `shutdown` resolves; HTTP/1.1 and h2c (prior knowledge) on the same listener.
    /// After `shutdown`, stops accepting, lets in-flight requests finish and closes idle
    /// connections; waits at most 10 s for them.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut workers = workers::Workers::start(self.inner.config.limits.workers, &self.inner)?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // EMFILE, ECONNABORTED…: the listener is fine; back off a little.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let Some(slot) = ConnectionSlot::take(&self.inner) else {
                        tokio::spawn(refuse(stream, self.inner.config.limits.max_connections));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    match workers.as_mut() {
                        Some(workers) => workers.dispatch(stream, stop_rx.clone(), slot),
                        None => {
                            tokio::spawn(serve_connection(self.inner.clone(), stream, stop_rx.clone(), slot));
                        }
                    }
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        drop(stop_rx);
        let _ = stop_tx.send(true);
        tokio::select! {
            () = stop_tx.closed() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                tracing::warn!("connections still open 10 s after shutdown; leaving them");
            }
        }
        drop(workers);
        Ok(())
    }

    /// Requests counted so far per (service, lane that served), sorted.
    pub fn traffic(&self) -> Vec<TrafficCount> {
        self.inner.stats.traffic()
    }

    /// The Prometheus text the router serves at `/metrics`.
    pub fn metrics(&self) -> String {
        self.inner.metrics()
    }
}

/// What the router does with a request, decided from its host and lane headers alone.
pub(crate) enum Outcome {
    /// For the router itself (`/healthz`, `/metrics`).
    Admin,
    /// Answered by the router: unknown service, no healthy instance, a bad service host.
    Reply {
        status: StatusCode,
        body: String,
        invalid: Option<HeaderValue>,
    },
    /// Forward to `target`; the response gets `served_by` (and `invalid`, when set). `service`
    /// and `value` are the request's, for a retry on another candidate
    /// ([`Inner::retry_target`]).
    Forward {
        target: SocketAddr,
        served_by: HeaderValue,
        invalid: Option<HeaderValue>,
        service: ServiceId,
        value: LaneValue,
    },
}

impl Inner {
    /// Routes a request for `host` whose lane header and `baggage` values are given: the one place
    /// both the HTTP/1.x and the h2c side ask. Counts the request when it is forwarded.
    pub(crate) fn decide<'a>(
        &self,
        host: Option<&str>,
        lane_header: impl IntoIterator<Item = &'a [u8]>,
        baggage: impl IntoIterator<Item = &'a [u8]>,
    ) -> Outcome {
        let service = match host::classify(host) {
            HostKind::Service(service) => service,
            HostKind::Admin => return Outcome::Admin,
            HostKind::BadServiceHost(why) => {
                return Outcome::Reply {
                    status: StatusCode::NOT_FOUND,
                    body: format!(
                        "lane router: {why}\nservices this router knows: {}\n",
                        self.known_services()
                    ),
                    invalid: None,
                };
            }
        };
        let value = lane_core::header::lane_value(lane_header, baggage);
        let invalid = match &value {
            LaneValue::Invalid(why) => Some(header_text(why)),
            _ => None,
        };
        let table = self.table.current();
        let (lane, target) = match table.route(&service, &value) {
            Decision::Serve { lane, targets } => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % targets.len();
                (lane, targets[i])
            }
            Decision::UnknownService => {
                drop(table);
                let host = host.unwrap_or_default();
                let body = format!(
                    "lane router: no service `{service}` is registered (host `{host}`)\nservices this router knows: {}\n",
                    self.known_services()
                );
                return Outcome::Reply {
                    status: StatusCode::NOT_FOUND,
                    body,
                    invalid,
                };
            }
            Decision::NoHealthyInstance => {
                let wanted = match &value {
                    LaneValue::Lane(lane) => {
                        format!("in lane `{lane}`, the lanes it is stacked on, or baseline")
                    }
                    _ => "in baseline".to_owned(),
                };
                return Outcome::Reply {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: format!(
                        "lane router: service `{service}` has no healthy instance {wanted}\n"
                    ),
                    invalid,
                };
            }
        };
        drop(table);
        Outcome::Forward {
            target,
            served_by: self.stats.record(&service, lane),
            invalid,
            service,
            value,
        }
    }

    /// The next candidate of the same routing decision once the targets in `failed` refused the
    /// connection (nothing of the request was sent): another instance of the lane, else the
    /// fallback the routing invariant gives without them ([`RoutingTable::route_without`]).
    /// Counts the retry and the request for its new lane; `None` when no candidate is left.
    pub(crate) fn retry_target(
        &self,
        service: &ServiceId,
        value: &LaneValue,
        failed: &[SocketAddr],
    ) -> Option<(SocketAddr, HeaderValue)> {
        let table = self.table.current();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let (lane, target) = table
            .route_without(service, value, failed, start)
            .map(|(l, t)| (l, *t))?;
        drop(table);
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        Some((target, self.stats.record(service, lane)))
    }

    /// Serves a request through hyper from `client`: every h2c request, and HTTP/1.x ones on a
    /// connection handed over because it asked for an HTTP/2-only service (the others are served
    /// by [`h1`]).
    async fn handle(
        &self,
        req: Request<Incoming>,
        client: Option<std::net::IpAddr>,
    ) -> Response<RouterBody> {
        let host = req.uri().authority().map(Authority::as_str).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let headers = req.headers();
        let grpc = is_grpc(headers);
        let outcome = self.decide(
            host,
            headers
                .get_all(&self.config.lane_header)
                .iter()
                .map(HeaderValue::as_bytes),
            headers.get_all(BAGGAGE).iter().map(HeaderValue::as_bytes),
        );
        let (target, served_by, invalid) = match outcome {
            Outcome::Admin => {
                let get = req.method() == Method::GET || req.method() == Method::HEAD;
                let (status, content_type, body) = self.admin(get, req.uri().path());
                let mut resp = text(status, body);
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                return resp;
            }
            Outcome::Reply {
                status,
                body,
                invalid,
            } => {
                return self.counted(with_invalid(error_response(grpc, status, body), invalid));
            }
            Outcome::Forward {
                target,
                served_by,
                invalid,
                ..
            } => (target, served_by, invalid),
        };

        let (mut parts, body) = req.into_parts();
        let client_h2 = parts.version == http::Version::HTTP_2;
        // The client's body, held to the body timeout; a stall before the response head is a 408.
        let body_timeout = self.config.limits.body_timeout;
        let client_stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = {
            let counts = self.stats.body_timeouts.clone();
            let stalled = client_stalled.clone();
            let who = served_by.to_str().unwrap_or("").to_owned();
            RouterBody::Timed(Box::new(forward::Timed::new(
                body,
                body_timeout,
                move || {
                    counts[h1::Side::Client as usize].fetch_add(1, Ordering::Relaxed);
                    stalled.store(true, Ordering::Relaxed);
                    let why = format!(
                        "the request body stalled: no byte of it came for {body_timeout:?} \
                     (LANE_ROUTER_BODY_TIMEOUT)"
                    );
                    tracing::info!("a request body to {who} at {target}: {why}");
                    why
                },
            )))
        };
        strip_hop_by_hop(&mut parts.headers);
        if self.config.header_to_baggage
            && let Some(baggage) = edge::baggage_for(
                parts
                    .headers
                    .get_all(&self.config.lane_header)
                    .iter()
                    .map(HeaderValue::as_bytes),
                parts
                    .headers
                    .get_all(BAGGAGE)
                    .iter()
                    .map(HeaderValue::as_bytes),
            )
        {
            parts.headers.insert(BAGGAGE, baggage);
        }
        if let Some(ip) = client {
            let mut chain = Vec::new();
            for earlier in parts.headers.get_all(FORWARDED_FOR) {
                chain.extend_from_slice(earlier.as_bytes());
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(ip.to_string().as_bytes());
            if let Ok(chain) = HeaderValue::from_bytes(&chain) {
                parts.headers.insert(FORWARDED_FOR, chain);
            }
        }
        parts
            .headers
            .entry(FORWARDED_PROTO)
            .or_insert(HeaderValue::from_static("http"));
        // Upstream speaks what the service declared (else what the client spoke); HTTP/1.1 needs
        // the authority as `Host`.
        let h1_upstream = match self.table.protocol(target) {
            Some(Protocol::Http) => true,
            Some(Protocol::Grpc) => false,
            None => parts.version != http::Version::HTTP_2,
        };
        if !h1_upstream {
            parts.version = http::Version::HTTP_2;
        } else {
            parts.version = http::Version::HTTP_11;
            if let Some(authority) = parts.uri.authority()
                && !parts.headers.contains_key(header::HOST)
                && let Ok(host) = HeaderValue::from_str(authority.as_str())
            {
                parts.headers.insert(header::HOST, host);
            }
        }
        let upstream = if h1_upstream {
            &self.clients.h1
        } else {
            &self.clients.h2
        };
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = upstream_uri(target, path);
        let timeout = self.config.limits.response_timeout;
        let sent =
            tokio::time::timeout(timeout, upstream.request(Request::from_parts(parts, body))).await;
        let resp = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err(_)) if client_stalled.load(Ordering::Relaxed) => {
                let body = format!(
                    "lane router: the request body stalled: no byte of it came for \
                     {body_timeout:?} (LANE_ROUTER_BODY_TIMEOUT)\n"
                );
                let mut resp = error_response(grpc, StatusCode::REQUEST_TIMEOUT, body);
                if !client_h2 {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return self.counted(resp);
            }
            failed => {
                let (status, what, why) = match failed {
                    Err(_) => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "timed out",
                        format!(
                            "it sent no response head within {timeout:?} \
                             (LANE_ROUTER_RESPONSE_TIMEOUT)"
                        ),
                    ),
                    Ok(Err(e)) if is_timeout(&e) => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "timed out",
                        format!(
                            "it did not accept the connection within {:?} \
                             (LANE_ROUTER_CONNECT_TIMEOUT): {}",
                            self.config.limits.connect_timeout,
                            error_chain(&e)
                        ),
                    ),
                    Ok(Err(e)) => (
                        StatusCode::BAD_GATEWAY,
                        "could not be reached",
                        error_chain(&e),
                    ),
                    Ok(Ok(_)) => unreachable!("matched above"),
                };
                let body = format!(
                    "lane router: {} at {target} {what}: {why}\n",
                    served_by.to_str().unwrap_or(""),
                );
                let mut resp = error_response(grpc, status, body);
                resp.headers_mut().insert(SERVED_BY_HEADER, served_by);
                return self.counted(with_invalid(resp, invalid));
            }
        };
        let stalled = {
            let counts = self.stats.body_timeouts.clone();
            let who = served_by.to_str().unwrap_or("").to_owned();
            move || {
                counts[h1::Side::Upstream as usize].fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "{who} at {target} sent no byte of its response body for {body_timeout:?} \
                     (LANE_ROUTER_BODY_TIMEOUT)"
                );
                tracing::warn!("{why}; resetting the response to the client");
                why
            }
        };
        let mut resp = resp.map(|body| {
            RouterBody::Timed(Box::new(forward::Timed::new(body, body_timeout, stalled)))
        });
        let headers = resp.headers_mut();
        strip_hop_by_hop(headers);
        match headers.entry(SERVED_BY_HEADER) {
            Entry::Vacant(slot) => {
                slot.insert(served_by);
            }
            Entry::Occupied(mut slot) => {
                let mut joined = served_by.as_bytes().to_vec();
                for hop in slot.iter() {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(hop.as_bytes());
                }
                if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                    slot.insert(joined);
                }
            }
        }
        self.counted(with_invalid(resp, invalid))
    }

    fn counted(&self, resp: Response<RouterBody>) -> Response<RouterBody> {
        self.stats.status(resp.status());
        resp
    }

    fn known_services(&self) -> String {
        let table = self.table.current();
        let mut names: Vec<&str> = table.services().map(ServiceId::as_str).collect();
        if names.is_empty() {
            return "(none)".to_owned();
        }
        names.sort_unstable();
        names.join(", ")
    }

    /// The router's own endpoints: status, content type and body.
    pub(crate) fn admin(&self, get: bool, path: &str) -> (StatusCode, &'static str, String) {
        match path {
            "/healthz" if get => {
                let registry = self
                    .table
                    .registry()
                    .map(|r| r.healthz())
                    .unwrap_or_default();
                (StatusCode::OK, TEXT_PLAIN, format!("ok\n{registry}"))
            }
            "/metrics" if get => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics(),
            ),
            path => (
                StatusCode::NOT_FOUND,
                TEXT_PLAIN,
                format!(
                    "lane router: nothing at `{path}` here. Services are served under \
                     `<proc>.<app>.{SERVICE_DOMAIN}` hosts; this host serves GET /healthz and \
                     GET /metrics.\nservices this router knows: {}\n",
                    self.known_services()
                ),
            ),
        }
    }

    fn metrics(&self) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str("# HELP lane_router_up Whether the lane router is serving.\n");
        out.push_str("# TYPE lane_router_up gauge\nlane_router_up 1\n");
        out.push_str(
            "# HELP lane_router_table_generation Generation of the routing table in force.\n",
        );
        out.push_str("# TYPE lane_router_table_generation gauge\n");
        let _ = writeln!(
            out,
            "lane_router_table_generation {}",
            self.table.current().generation()
        );
        if let Some(r) = self.table.registry() {
            r.metrics(&mut out);
        }
        out.push_str(
            "# HELP lane_router_requests_total Requests routed, by service and the lane that served.\n",
        );
        out.push_str("# TYPE lane_router_requests_total counter\n");
        for t in self.stats.traffic() {
            let _ = writeln!(
                out,
                "lane_router_requests_total{{service=\"{}\",lane=\"{}\"}} {}",
                t.service, t.lane, t.requests
            );
        }
        out.push_str(
            "# HELP lane_router_responses_total Responses to service requests, by status code.\n",
        );
        out.push_str("# TYPE lane_router_responses_total counter\n");
        for (code, n) in self.stats.statuses.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "lane_router_responses_total{{code=\"{code}\"}} {n}");
            }
        }
        out.push_str(
            "# HELP lane_router_body_timeouts_total Bodies that stalled longer than \
             LANE_ROUTER_BODY_TIMEOUT, by the side that stalled.\n",
        );
        out.push_str("# TYPE lane_router_body_timeouts_total counter\n");
        for side in [h1::Side::Client, h1::Side::Upstream] {
            let _ = writeln!(
                out,
                "lane_router_body_timeouts_total{{side=\"{}\"}} {}",
                side.name(),
                self.stats.body_timeouts[side as usize].load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP lane_router_send_timeouts_total Peers that took no byte the router wrote to \
             them for LANE_ROUTER_SEND_TIMEOUT (HTTP/1.x), by side: a client that stopped reading \
             its response, an instance that stopped reading its request.\n",
        );
        out.push_str("# TYPE lane_router_send_timeouts_total counter\n");
        for side in [h1::Side::Client, h1::Side::Upstream] {
            let _ = writeln!(
                out,
                "lane_router_send_timeouts_total{{side=\"{}\"}} {}",
                side.name(),
                self.stats.send_timeouts[side as usize].load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP lane_router_connect_retries_total Requests sent to the next candidate because \
             an instance refused the connection (nothing of the request had been sent).\n",
        );
        out.push_str("# TYPE lane_router_connect_retries_total counter\n");
        let _ = writeln!(
            out,
            "lane_router_connect_retries_total {}",
            self.stats.retries.load(Ordering::Relaxed)
        );
        out
    }
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The HTTP/2 connection preface (RFC 9113 §3.4): how an h2c client opens.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One of the [`Limits::max_connections`] places; given back when dropped.
struct ConnectionSlot(Arc<Inner>);

impl ConnectionSlot {
    fn take(inner: &Arc<Inner>) -> Option<ConnectionSlot> {
        let max = inner.config.limits.max_connections;
        inner
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(ConnectionSlot(inner.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Turns away a connection over the cap: a `503` that says why, then close (after reading, for a
/// moment, what the client sent, so that the answer is not lost to a reset).
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tracing::warn!(
        "refusing a connection: {max} connections are open (LANE_ROUTER_MAX_CONNECTIONS)"
    );
    let body = format!(
        "lane router: too many connections: {max} are open, the most it serves at once \
         (LANE_ROUTER_MAX_CONNECTIONS); try again later\n"
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        stream.write_all(resp.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    if let Ok(Err(e)) = sent {
        tracing::debug!("refused connection: {e}");
    }
}

/// Serves one accepted connection: h2c if it opens with the HTTP/2 preface, HTTP/1.x otherwise.
async fn serve_connection(
    inner: Arc<Inner>,
    mut stream: tokio::net::TcpStream,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _slot: ConnectionSlot,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
    // The first bytes, within the request-head timeout (the HTTP/1.x side checks the rest).
    let deadline = tokio::time::Instant::now() + inner.config.limits.head_timeout;
    let mut watchdog = h1::Watchdog::new(deadline);
    while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = stop.wait_for(|stop| *stop) => return,
            () = watchdog.expired() => return,
        }
    }
    if !buf.starts_with(H2_PREFACE) {
        return h1::serve(inner, stream, buf, stop, watchdog).await;
    }
    let client = stream.peer_addr().ok().map(|a| a.ip());
    let idle_timeout = inner.config.limits.idle_timeout;
    let head_timeout = inner.config.limits.head_timeout;
    let io = forward::Prefixed::new(buf.freeze(), stream, inner.config.limits.send_timeout);
    let _stalled = SendStall::new(&inner, io.stalled());
    let streams = h2idle::Streams::new();
    let mut open = streams.watch();
    let service = hyper::service::service_fn(move |req| {
        let inner = inner.clone();
        let guard = streams.open();
        async move {
            let resp = inner.handle(req, client).await;
            Ok::<_, Infallible>(resp.map(|body| h2idle::Tracked::new(body, guard)))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(1024)
        .adaptive_window(true)
        // A peer that stops answering pings (sent every idle timeout) is let go too.
        .keep_alive_interval(idle_timeout)
        .keep_alive_timeout(KEEP_ALIVE_PING_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    // Served until it ends, the router stops, or no stream has been open for the idle timeout: then
    // a GOAWAY, and if the peer has still not let the connection end (hyper waits for the ACK of a
    // ping before it closes) after another idle period with no stream open, it is dropped.
    let mut closing = false;
    loop {
        let count = *open.borrow_and_update();
        let idle = count.open == 0;
        // Until its first request has come, a connection has the head timeout (from its start,
        // as on HTTP/1.x); then the idle timeout between requests.
        let wait = if count.ever {
            idle_timeout
        } else {
            head_timeout
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("h2c connection ended: {e}");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => break,
            changed = open.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(wait), if idle => {
                if closing {
                    tracing::debug!("dropping an h2c connection whose peer did not close it after GOAWAY");
                    return;
                }
                if count.ever {
                    tracing::debug!(
                        "closing an h2c connection idle for {idle_timeout:?} (LANE_ROUTER_IDLE_TIMEOUT)"
                    );
                } else {
                    tracing::debug!(
                        "closing an h2c connection whose first request did not come whole within \
                         {head_timeout:?} (LANE_ROUTER_HEAD_TIMEOUT)"
                    );
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    if !closing {
        conn.as_mut().graceful_shutdown();
    }
    if let Err(e) = conn.await {
        tracing::debug!("h2c connection ended: {e}");
    }
}

/// How long an h2c peer has to answer a keep-alive ping (sent every idle timeout) before its
/// connection is closed.
const KEEP_ALIVE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether an upstream error is a timeout (the connector's connect timeout).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Serves an HTTP/1.x connection through hyper (after the router's own loop met a request for an
/// HTTP/2-only service): each request goes through [`Inner::handle`], which proxies in the protocol
/// its target speaks. `prefix` holds the bytes already read.
pub(crate) async fn serve_h1_via_hyper(
    inner: Arc<Inner>,
    stream: tokio::net::TcpStream,
    prefix: Bytes,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = stream.peer_addr().ok().map(|a| a.ip());
    let io = forward::Prefixed::new(prefix, stream, inner.config.limits.send_timeout);
    let _stalled = SendStall::new(&inner, io.stalled());
    let service = hyper::service::service_fn(move |req| {
        let inner = inner.clone();
        async move { Ok::<_, Infallible>(inner.handle(req, client).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => {
            if let Err(e) = ended {
                tracing::debug!("HTTP/1.x connection ended: {e}");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!("HTTP/1.x connection ended: {e}");
    }
}

/// Counts (and logs) a connection served through hyper whose client stopped reading, once the
/// connection is over, however it ends.
struct SendStall {
    inner: Arc<Inner>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl SendStall {
    fn new(inner: &Arc<Inner>, stalled: Arc<std::sync::atomic::AtomicBool>) -> Self {
        SendStall {
            inner: inner.clone(),
            stalled,
        }
    }
}

impl Drop for SendStall {
    fn drop(&mut self) {
        if self.stalled.load(Ordering::Relaxed) {
            self.inner.stats.send_timed_out(h1::Side::Client);
            tracing::info!(
                "a client took no byte for {:?} (LANE_ROUTER_SEND_TIMEOUT); closed its connection",
                self.inner.config.limits.send_timeout
            );
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<RouterBody> {
    text_response(status, body)
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A response the router makes itself. For a gRPC request it is a gRPC "trailers-only" error (HTTP
/// 200, `grpc-status`, `grpc-message`) so that gRPC clients show the message; otherwise plain text.
fn error_response(grpc: bool, status: StatusCode, body: String) -> Response<RouterBody> {
    if !grpc {
        return text_response(status, body);
    }
    // gRPC's HTTP-to-status mapping: 404 → UNIMPLEMENTED, 502/503 → UNAVAILABLE.
    let code: &'static str = match status {
        StatusCode::NOT_FOUND => "12",
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => "14",
        StatusCode::GATEWAY_TIMEOUT => "4",
        _ => "2",
    };
    let mut message = String::with_capacity(body.len());
    for b in body.trim_end().bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            message.push(char::from(b));
        } else {
            let _ = write!(message, "%{b:02X}");
        }
    }
    let mut resp = Response::new(RouterBody::Full(None));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from_static(code));
    if let Ok(message) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", message);
    }
    resp
}

fn with_invalid(
    mut resp: Response<RouterBody>,
    invalid: Option<HeaderValue>,
) -> Response<RouterBody> {
    if let Some(why) = invalid {
        resp.headers_mut().insert(INVALID_HEADER, why);
    }
    resp
}

fn upstream_uri(target: SocketAddr, path: PathAndQuery) -> Uri {
    let mut buf = String::with_capacity(24);
    let _ = write!(buf, "{target}");
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Authority::from_maybe_shared(Bytes::from(buf)).ok();
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("http://0.0.0.0/"))
}

/// Counters: requests per (service, lane served), with the cached served-by value, and responses by
/// status code.
struct Stats {
    lanes: Mutex<HashMap<ServiceId, Vec<LaneStat>>>,
    statuses: Box<[AtomicU64]>,
    /// Bodies cut for a stall ([`Limits::body_timeout`]), by [`h1::Side`].
    body_timeouts: Arc<[AtomicU64; 2]>,
    /// Peers that stopped taking what the router writes ([`Limits::send_timeout`]), by
    /// [`h1::Side`].
    send_timeouts: [AtomicU64; 2],
    /// Requests sent to another candidate because an instance refused the connection.
    retries: AtomicU64,
}

struct LaneStat {
    lane: LaneRef,
    requests: u64,
    served_by: HeaderValue,
}

impl Stats {
    fn new() -> Self {
        Stats {
            lanes: Mutex::new(HashMap::new()),
            statuses: (0..600).map(|_| AtomicU64::new(0)).collect(),
            body_timeouts: Default::default(),
            send_timeouts: Default::default(),
            retries: AtomicU64::new(0),
        }
    }

    /// Counts a body cut because `side` stalled.
    pub(crate) fn body_timed_out(&self, side: h1::Side) {
        self.body_timeouts[side as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a peer on `side` that stopped taking what the router writes.
    pub(crate) fn send_timed_out(&self, side: h1::Side) {
        self.send_timeouts[side as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request and returns its `x-lane-served-by` value.
    fn record(&self, service: &ServiceId, lane: LaneRef) -> HeaderValue {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = match lanes.get_mut(service) {
            Some(stats) => stats,
            None => lanes.entry(service.clone()).or_default(),
        };
        if let Some(stat) = stats.iter_mut().find(|s| s.lane == lane) {
            stat.requests += 1;
            return stat.served_by.clone();
        }
        let served_by = HeaderValue::from_maybe_shared(Bytes::from(lane_core::naming::served_by(
            service, &lane,
        )))
        .unwrap_or_else(|_| HeaderValue::from_static("?"));
        stats.push(LaneStat {
            lane,
            requests: 1,
            served_by: served_by.clone(),
        });
        served_by
    }

    /// Takes back one request counted by [`Stats::record`] (whose `served_by` it returned).
    fn forget(&self, served_by: &HeaderValue) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stat) = lanes
            .values_mut()
            .flat_map(|stats| stats.iter_mut())
            .find(|s| s.served_by == served_by)
        {
            stat.requests = stat.requests.saturating_sub(1);
        }
    }

    fn status(&self, status: StatusCode) {
        if let Some(n) = self.statuses.get(usize::from(status.as_u16())) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn traffic(&self) -> Vec<TrafficCount> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TrafficCount> = lanes
            .iter()
            .flat_map(|(service, stats)| {
                stats.iter().map(|s| TrafficCount {
                    service: service.clone(),
                    lane: s.lane.clone(),
                    requests: s.requests,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, &a.lane).cmp(&(&b.service, &b.lane)));
        out
    }
}
