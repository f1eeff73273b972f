//! `lane-resolver`: client-side lane routing for Rust services (scheme 1: the seed's
//! "ConsulNameResolver plus a custom load balancer").
//!
//! - [`Resolver`] keeps the routing table of a Consul datacenter — the lane documents and the
//!   passing instances of `<prefix>.<app>.<proc>` and `<prefix>-lane.<app>.<proc>` — up to date
//!   with blocking queries (`lane_consul::watch`), and picks an instance for a service and a lane
//!   value with [`lane_core::RoutingTable::route`], round-robin among the chosen lane's instances.
//! - [`LaneLayer`] is a `tower` layer for an HTTP client service (hyper's client, or the service a
//!   tonic client runs on): each outgoing request to a logical service goes to the instance the
//!   resolver picks for the request's lane. The lane is read exactly as `lane_core::header` reads
//!   it (the lane header, else the `lane` entry of `baggage`); when the outgoing request carries
//!   neither, the lane of the incoming request being served ([`incoming`]) is used and written
//!   onto the outgoing request (lane header and baggage), so the lane travels hop by hop.
//!
//! The inner service must accept absolute URIs to any `host:port` (as
//! `hyper_util::client::legacy::Client` does): the layer rewrites the request's authority to the
//! chosen instance's address.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use lane_core::header::lane_value;
use lane_core::{Decision, LaneRef, LaneValue, RoutingTable, ServiceId};

/// The lane header every routing component reads by default.
pub const DEFAULT_LANE_HEADER: HeaderName = HeaderName::from_static("x-lane");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Why no instance was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No instance of the service is known at all.
    UnknownService(ServiceId),
    /// Instances are known, none of them passes in the lane's chain or in baseline.
    NoHealthyInstance(ServiceId),
    /// The request has no logical service (its host is no `<proc>.<app>` and none was set).
    NoService(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::UnknownService(s) => {
                write!(f, "lane resolver: no instance of {s} is registered")
            }
            ResolveError::NoHealthyInstance(s) => write!(
                f,
                "lane resolver: {s} has no passing instance in the lane's chain or in baseline"
            ),
            ResolveError::NoService(h) => {
                write!(f, "lane resolver: `{h}` names no service (<proc>.<app>)")
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// The instance lists of a datacenter as one routing table, swapped whole on every change.
#[derive(Clone, Default)]
pub struct Resolver {
    table: Arc<RwLock<Arc<RoutingTable<SocketAddr>>>>,
    next: Arc<AtomicUsize>,
}

impl Resolver {
    /// A resolver with a table of its own (tests, or a table fed from elsewhere).
    pub fn new(table: RoutingTable<SocketAddr>) -> Self {
        Resolver {
            table: Arc::new(RwLock::new(Arc::new(table))),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A resolver following Consul (blocking queries of at most `wait`); the task runs until
    /// the runtime stops or the handle is aborted.
    pub fn follow_consul(
        client: lane_consul::client::Client,
        wait: Duration,
    ) -> (Resolver, tokio::task::JoinHandle<()>) {
        let resolver = Resolver::default();
        let feed = resolver.clone();
        let task = tokio::spawn(lane_consul::watch::follow(
            client,
            wait,
            move |t| feed.update(t),
            |_| {},
        ));
        (resolver, task)
    }

    /// Replaces the table; the next pick uses it.
    pub fn update(&self, table: RoutingTable<SocketAddr>) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// The table now in force.
    pub fn table(&self) -> Arc<RoutingTable<SocketAddr>> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The instance for `service` and `lane`, and the lane that serves (after fallback).
    pub fn pick(
        &self,
        service: &ServiceId,
        lane: &LaneValue,
    ) -> Result<(LaneRef, SocketAddr), ResolveError> {
        let table = self.table();
        match table.route(service, lane) {
            Decision::Serve { lane, targets } => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % targets.len();
                Ok((lane, targets[i]))
            }
            Decision::UnknownService => Err(ResolveError::UnknownService(service.clone())),
            Decision::NoHealthyInstance => Err(ResolveError::NoHealthyInstance(service.clone())),
        }
    }
}

/// The lane of the request being served, as read from its headers.
#[derive(Debug, Clone, Default)]
pub struct IncomingLane {
    header: Option<HeaderValue>,
    baggage: Vec<HeaderValue>,
}

impl IncomingLane {
    /// The lane header (`lane_header`) and `baggage` of an incoming request.
    pub fn from_headers(headers: &http::HeaderMap, lane_header: &HeaderName) -> Self {
        IncomingLane {
            header: headers.get(lane_header).cloned(),
            baggage: headers.get_all(BAGGAGE).iter().cloned().collect(),
        }
    }
}

tokio::task_local! {
    static INCOMING: IncomingLane;
}

/// Runs `fut` (the handling of one incoming request) with `lane` as the lane its outgoing calls
/// carry when they say none themselves.
pub async fn incoming<F: Future>(lane: IncomingLane, fut: F) -> F::Output {
    INCOMING.scope(lane, fut).await
}

/// The layer: routes each request of the wrapped client by its lane.
#[derive(Clone)]
pub struct LaneLayer {
    resolver: Resolver,
    lane_header: HeaderName,
    service: Option<ServiceId>,
}

impl LaneLayer {
    /// Routes requests to the service their host names (`<proc>.<app>`, any port and suffix
    /// after the second label ignored: `cart.shop`, `cart.shop.svc:8080`).
    pub fn new(resolver: Resolver) -> Self {
        LaneLayer {
            resolver,
            lane_header: DEFAULT_LANE_HEADER,
            service: None,
        }
    }

    /// Routes every request to `service`, whatever its host.
    pub fn for_service(mut self, service: ServiceId) -> Self {
        self.service = Some(service);
        self
    }

    /// Another lane header than `x-lane`.
    pub fn lane_header(mut self, name: HeaderName) -> Self {
        self.lane_header = name;
        self
    }
}

impl<S> tower_layer::Layer<S> for LaneLayer {
    type Service = LaneService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LaneService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`LaneLayer`] makes.
#[derive(Clone)]
pub struct LaneService<S> {
    inner: S,
    layer: LaneLayer,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<http::Request<B>> for LaneService<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.route(&mut req) {
            Ok(()) => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            Err(e) => Box::pin(async move { Err(Box::new(e) as BoxError) }),
        }
    }
}

impl<S> LaneService<S> {
    /// Picks the instance for `req`, points it there and makes sure it carries its lane.
    fn route<B>(&self, req: &mut http::Request<B>) -> Result<(), ResolveError> {
        let layer = &self.layer;
        let service = match &layer.service {
            Some(s) => s.clone(),
            None => service_of(req.uri())?,
        };
        let headers = req.headers_mut();
        // The outgoing request says nothing: the incoming request's lane travels on.
        if headers.get(&layer.lane_header).is_none() && headers.get(BAGGAGE).is_none() {
            let _ = INCOMING.try_with(|inc| {
                if let Some(h) = &inc.header {
                    headers.insert(layer.lane_header.clone(), h.clone());
                }
                for b in &inc.baggage {
                    headers.append(BAGGAGE, b.clone());
                }
            });
        }
        let value = lane_value(
            headers
                .get_all(&layer.lane_header)
                .iter()
                .map(HeaderValue::as_bytes),
            headers.get_all(BAGGAGE).iter().map(HeaderValue::as_bytes),
        );
        let (_, target) = layer.resolver.pick(&service, &value)?;
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(parts.scheme.unwrap_or(Scheme::HTTP));
        parts.authority = Authority::try_from(target.to_string()).ok();
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|e| ResolveError::NoService(e.to_string()))?;
        Ok(())
    }
}

/// `cart.shop[.anything][:port]` → `shop.cart`.
fn service_of(uri: &Uri) -> Result<ServiceId, ResolveError> {
    let host = uri.host().unwrap_or_default();
    let mut labels = host.split('.');
    match (labels.next(), labels.next()) {
        (Some(proc_), Some(app)) => {
            ServiceId::new(app, proc_).map_err(|_| ResolveError::NoService(host.to_owned()))
        }
        _ => Err(ResolveError::NoService(host.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_services() {
        let s = |u: &str| service_of(&u.parse::<Uri>().unwrap());
        assert_eq!(s("http://cart.shop/x").unwrap().as_str(), "shop.cart");
        assert_eq!(
            s("http://cart.shop.svc:8080/").unwrap().as_str(),
            "shop.cart"
        );
        assert!(s("http://localhost/").is_err());
        assert!(s("/relative").is_err());
    }
}
