//! Helpers for the router's socket tests: tiny real hyper backends, a router on loopback and an
//! HTTP/1.1 client. Nothing is mocked.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lane_core::{Endpoint, LaneRef};
use lane_router::{Router, RouterConfig, Table, TableHandle};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Stops a server when dropped.
pub struct Stop(Option<oneshot::Sender<()>>);

impl Stop {
    pub fn new(tx: oneshot::Sender<()>) -> Self {
        Stop(Some(tx))
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn stop_pair() -> (Stop, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = oneshot::channel();
    (Stop(Some(tx)), async move {
        let _ = rx.await;
    })
}

/// A backend that answers every request with its own name as the body and echoes what it saw:
/// `x-backend: <name>`, `x-seen-lane`, `x-seen-baggage`, `x-seen-host`, `x-seen-secret` (a header the
/// client named in `Connection`, which must not arrive), `x-seen-forwarded-for`/`-proto`. `/slow?ms=N` waits N ms first; `/hop`
/// answers with `x-lane-served-by: demo.c@baseline` as if it had called another service.
pub async fn backend(name: &'static str) -> (SocketAddr, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = stop_pair();
    tokio::spawn(async move {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => accepted.unwrap().0,
                () = &mut shutdown => return,
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(name, req).await)
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, stop)
}

async fn answer(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = req.headers().clone();
    if req.uri().path() == "/slow" {
        let ms: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let hop = req.uri().path() == "/hop";
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut text = name.to_owned();
    if !body.is_empty() {
        text.push_str(" got ");
        text.push_str(&String::from_utf8_lossy(&body));
    }
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    let h = resp.headers_mut();
    h.insert("x-backend", name.parse().unwrap());
    for (seen, header) in [
        ("x-seen-lane", "x-lane"),
        ("x-seen-baggage", "baggage"),
        ("x-seen-host", "host"),
        ("x-seen-secret", "x-secret"),
        ("x-seen-forwarded-for", "x-forwarded-for"),
        ("x-seen-forwarded-proto", "x-forwarded-proto"),
    ] {
        if let Some(v) = headers.get(header) {
            h.insert(seen, v.clone());
        }
    }
    if hop {
        h.insert("x-lane-served-by", "demo.c@baseline".parse().unwrap());
        h.append("x-lane-served-by", "demo.d@baseline".parse().unwrap());
    }
    resp
}

pub fn ep(service: &str, lane: &str, healthy: bool, target: SocketAddr) -> Endpoint<SocketAddr> {
    Endpoint {
        service: service.parse().unwrap(),
        lane: lane.parse::<LaneRef>().unwrap(),
        healthy,
        target,
    }
}

pub fn table(
    endpoints: Vec<Endpoint<SocketAddr>>,
    parents: &[(&str, &str)],
    generation: u64,
) -> Table {
    Table::new(
        endpoints,
        parents
            .iter()
            .map(|(l, p)| (l.parse().unwrap(), p.parse().unwrap())),
        generation,
    )
}

pub struct RunningRouter {
    pub addr: SocketAddr,
    pub router: Router,
    pub table: TableHandle,
    _stop: Stop,
}

pub async fn router(table: Table) -> RunningRouter {
    router_with(RouterConfig::default(), table).await
}

/// A router with `config` (small timeouts, a low connection cap…) on loopback.
pub async fn router_with(config: RouterConfig, table: Table) -> RunningRouter {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = TableHandle::new(table);
    let router = Router::new(config, handle.clone());
    let (stop, shutdown) = stop_pair();
    tokio::spawn(router.clone().serve(listener, shutdown));
    RunningRouter {
        addr,
        router,
        table: handle,
        _stop: stop,
    }
}

pub type Http1 = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> Http1 {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// The parts of a response a test looks at.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    pub fn served_by(&self) -> &str {
        self.header("x-lane-served-by").unwrap_or("")
    }
}

/// `GET http://<addr><path>` with `Host: <host>` and extra headers.
pub async fn get(
    client: &Http1,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    send(client, "GET", addr, host, path, headers, "").await
}

/// Any request to `http://<addr><path>` with `Host: <host>`.
pub async fn send(
    client: &Http1,
    method: &str,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    collect(client.request(req).await.unwrap()).await
}

/// A response read whole.
pub async fn collect(resp: Response<Incoming>) -> Got {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A loopback address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}
