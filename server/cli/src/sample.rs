//! The sample service behind `lane demo` and the end-to-end tests.
//!
//! One tiny HTTP/1.1 server per proc (`a`, `b`, `c`, …). `GET /healthz` answers 200; `GET /slow/<ms>` answers
//! like any other request, but that many milliseconds later (for tests of requests in flight); `GET /version`
//! answers the version the process runs, as the agent gave it (`LANE_BRANCH`, `LANE_COMMIT`,
//! `LANE_VERSION`), in one JSON object, so a test can tell which commit serves. Any other
//! request is answered with one line naming this proc and the lane header it received; when the
//! proc has a next hop it first calls that hop through the router (`Host: <next>.<app>.localhost`),
//! forwarding the lane header and `baggage` the way a well-behaved app does (`docs/contracts.md`:
//! apps forward both), and appends the downstream line after ` -> `. Every `x-lane-served-by` value of the
//! downstream response is copied, in order, into this proc's response, so that once the router in
//! front of this proc prepends its own value the client sees the whole path: a → b → c.
//! `GET /data/<word>` writes the word to the data sources the process was given and reads them
//! back ([`data`]), for the end-to-end tests of data isolation.

mod data;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Environment variable that gives the router's address when [`SampleArgs::router`] is unset.
pub const ROUTER_ADDR_ENV: &str = "LANE_ROUTER_ADDR";
/// The lane header's default name.
pub const DEFAULT_LANE_HEADER: &str = "x-lane";
/// Response header the router adds (one value per hop).
pub const SERVED_BY_HEADER: &str = "x-lane-served-by";
/// The W3C baggage header.
const BAGGAGE: &str = "baggage";
/// Largest request or downstream response body this sample reads.
const MAX_BODY: usize = 1 << 20;
/// How long a call to the next hop may take, connect included.
const HOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run: one proc of the sample app.
#[derive(Debug, Clone)]
pub struct SampleArgs {
    /// This proc's name, e.g. `b`.
    pub name: String,
    /// The app name, e.g. `demo`.
    pub app: String,
    /// Port to listen on, on 127.0.0.1.
    pub port: u16,
    /// The next proc to call, e.g. `c`; `None` for the last hop.
    pub next: Option<String>,
    /// The router to send the next hop's request to; defaults to `$LANE_ROUTER_ADDR`.
    pub router: Option<SocketAddr>,
    /// Misbehave on purpose: do not forward the lane header and baggage to the next hop.
    pub drop_lane_header: bool,
    /// The lane header's name (`x-lane` by default).
    pub lane_header: String,
}

impl Default for SampleArgs {
    fn default() -> Self {
        SampleArgs {
            name: "a".into(),
            app: "demo".into(),
            port: 0,
            next: None,
            router: None,
            drop_lane_header: false,
            lane_header: DEFAULT_LANE_HEADER.into(),
        }
    }
}

/// Runs the sample service until SIGTERM or ctrl-c, then drains open connections.
pub async fn run(args: SampleArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("sample {}: cannot listen on {addr}", args.name))?;
    let local = listener.local_addr()?;
    eprintln!(
        "sample {}.{} listening on {local}; next hop: {}; LANE_INSTANCE={}; LANE_ID={}",
        args.app,
        args.name,
        args.next.as_deref().unwrap_or("none"),
        std::env::var("LANE_INSTANCE").unwrap_or_else(|_| "-".into()),
        std::env::var("LANE_ID").unwrap_or_else(|_| "-".into()),
    );
    serve(listener, args, shutdown_signal()).await
}

/// Resolves when the process is asked to stop.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Everything a request handler needs, shared by all connections.
struct State {
    args: SampleArgs,
    lane_header: HeaderName,
    /// Set when `args.next` is.
    router: Option<SocketAddr>,
}

/// Serves on `listener` until `shutdown` resolves, then lets open connections finish (bounded).
async fn serve(
    listener: TcpListener,
    args: SampleArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let lane_header = HeaderName::try_from(args.lane_header.as_str())
        .with_context(|| format!("`{}` is not a valid header name", args.lane_header))?;
    let router = match (&args.next, args.router) {
        (None, _) => None,
        (Some(_), Some(addr)) => Some(addr),
        (Some(next), None) => {
            let raw = std::env::var(ROUTER_ADDR_ENV).with_context(|| {
                format!(
                    "sample {}: next hop `{next}` needs a router address; pass one or set {ROUTER_ADDR_ENV}",
                    args.name
                )
            })?;
            Some(raw.trim().parse().with_context(|| {
                format!("{ROUTER_ADDR_ENV}=`{raw}` is not an address like 127.0.0.1:4000")
            })?)
        }
    };
    let state = Arc::new(State {
        args,
        lane_header,
        router,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!("sample {}: accept failed: {e}", state.args.name);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "sample {}: connections still open after {DRAIN_TIMEOUT:?}; closing them",
            state.args.name
        );
    }
    Ok(())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The body of `GET /version`: this proc and the version the agent started it as, read with `var`
/// (the process environment); a variable that is not set is `null`.
fn version_json(args: &SampleArgs, var: impl Fn(&str) -> Option<String>) -> String {
    let mut v = serde_json::json!({ "app": args.app, "proc": args.name });
    for (key, name) in [
        ("branch", "LANE_BRANCH"),
        ("commit", "LANE_COMMIT"),
        ("version", "LANE_VERSION"),
        ("instance", "LANE_INSTANCE"),
    ] {
        v[key] = var(name).into();
    }
    format!("{v}\n")
}

/// The values of `name`, joined for display.
fn shown(headers: &http::HeaderMap, name: &HeaderName) -> String {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("<not text>"))
        .collect();
    if values.is_empty() {
        "none".into()
    } else {
        values.join(", ")
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let args = &state.args;
    if req.uri().path() == "/healthz" {
        return text(StatusCode::OK, "ok\n".into());
    }
    if req.uri().path() == "/version" {
        let mut resp = text(
            StatusCode::OK,
            version_json(args, |k| std::env::var(k).ok()),
        );
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    if let Some(word) = req.uri().path().strip_prefix("/data/") {
        return match data::touch(word).await {
            Ok(line) => text(StatusCode::OK, format!("{line}\n")),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("data {word}: {e}\n"),
            ),
        };
    }
    // `/slow/<ms>`: answers after that long (at most a minute), for tests of requests in flight.
    if let Some(ms) = req.uri().path().strip_prefix("/slow/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("`{ms}` is not a number of milliseconds\n"),
            );
        };
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let me = format!(
        "{} (lane header: {})",
        args.name,
        shown(req.headers(), &state.lane_header)
    );
    let (Some(next), Some(router)) = (&args.next, state.router) else {
        return text(StatusCode::OK, format!("{me}\n"));
    };

    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{me}: cannot read the request body: {e}\n"),
            );
        }
    };
    let host = format!("{next}.{}.localhost", args.app);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut downstream = Request::builder().method(parts.method).uri(path);
    if let Some(headers) = downstream.headers_mut() {
        match HeaderValue::try_from(host.as_str()) {
            Ok(v) => {
                headers.insert(HOST, v);
            }
            Err(_) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{me}: `{host}` is not a valid host\n"),
                );
            }
        }
        if !args.drop_lane_header {
            for name in [state.lane_header.clone(), HeaderName::from_static(BAGGAGE)] {
                for value in parts.headers.get_all(&name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
    }
    let downstream = match downstream.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{me}: cannot build the request to `{next}`: {e}\n"),
            );
        }
    };

    let failed = |why: String| {
        text(
            StatusCode::BAD_GATEWAY,
            format!("{me} -> next hop `{next}` ({host} via {router}) failed: {why}\n"),
        )
    };
    let answer = match tokio::time::timeout(HOP_TIMEOUT, call(router, downstream)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return failed(format!("{e:#}")),
        Err(_) => return failed(format!("no answer within {HOP_TIMEOUT:?}")),
    };
    let (parts, body) = answer;
    let below = String::from_utf8_lossy(&body);
    let below = below.trim_end();
    let mut resp = if parts.status.is_success() {
        text(StatusCode::OK, format!("{me} -> {below}\n"))
    } else {
        failed(format!("answered {}: {below}", parts.status))
    };
    let served_by = HeaderName::from_static(SERVED_BY_HEADER);
    for value in parts.headers.get_all(&served_by) {
        resp.headers_mut().append(served_by.clone(), value.clone());
    }
    resp
}

/// One HTTP/1.1 request to `addr` on a fresh connection; returns the response head and body.
async fn call(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(http::response::Parts, Bytes)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.context("request failed")?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body failed: {e}"))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A started sample (or stub) server; stops it when dropped.
    struct Running {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    impl Running {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
            task.await.unwrap().unwrap();
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(args: SampleArgs) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, args, async {
            let _ = rx.await;
        }));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    fn proc_(name: &str, next: Option<&str>, router: Option<SocketAddr>) -> SampleArgs {
        SampleArgs {
            name: name.into(),
            next: next.map(Into::into),
            router,
            ..SampleArgs::default()
        }
    }

    async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Vec<String>, String) {
        let mut req = Request::builder().uri("/hello?x=1").header(HOST, "test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (parts, body) = call(addr, req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let served: Vec<String> = parts
            .headers
            .get_all(SERVED_BY_HEADER)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (
            parts.status,
            served,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// What the stub router saw: host, path, lane header lines, baggage lines.
    type Seen = Arc<Mutex<Vec<(String, String, Vec<String>, Vec<String>)>>>;

    /// A stand-in for the router: records each request and answers like a downstream proc
    /// behind a router would, with two `x-lane-served-by` values.
    async fn stub_router() -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            let all = |name: &str| -> Vec<String> {
                                req.headers()
                                    .get_all(name)
                                    .iter()
                                    .map(|v| v.to_str().unwrap().to_owned())
                                    .collect()
                            };
                            let host = all("host").join(",");
                            let path = req.uri().to_string();
                            record.lock().unwrap().push((
                                host,
                                path,
                                all("x-lane"),
                                all("baggage"),
                            ));
                            let mut resp = text(StatusCode::OK, "c (lane header: stub)\n".into());
                            for v in ["demo.c@feature-x", "demo.d@baseline"] {
                                resp.headers_mut()
                                    .append(SERVED_BY_HEADER, HeaderValue::from_static(v));
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, seen, task)
    }

    #[tokio::test]
    async fn healthz_and_last_hop() {
        let c = start(proc_("c", None, None)).await;
        let (status, _, body) = get(c.addr, &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "c (lane header: none)\n")
        );
        let mut req = Request::builder().uri("/healthz").header(HOST, "x");
        req = req.header("x-lane", "feature-x");
        let (parts, _) = call(c.addr, req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(parts.status, StatusCode::OK);
        c.stop().await;
    }

    #[test]
    fn version_reports_what_the_agent_gave() {
        let args = SampleArgs {
            name: "b".into(),
            ..SampleArgs::default()
        };
        let body = version_json(&args, |k| match k {
            "LANE_COMMIT" => Some("0123abc".into()),
            "LANE_BRANCH" => Some("origin/main".into()),
            _ => None,
        });
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"app": "demo", "proc": "b", "branch": "origin/main",
                "commit": "0123abc", "version": null, "instance": null})
        );
    }

    #[tokio::test]
    async fn forwards_lane_headers_through_the_router_and_copies_served_by() {
        let (router, seen, stub) = stub_router().await;
        let b = start(proc_("b", Some("c"), Some(router))).await;
        let (status, served, body) = get(
            b.addr,
            &[
                ("x-lane", "feature-x"),
                ("baggage", "userId=alice"),
                ("baggage", "lane=feature-x;ttl=3"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "b (lane header: feature-x) -> c (lane header: stub)\n"
        );
        assert_eq!(served, ["demo.c@feature-x", "demo.d@baseline"]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [(
                "c.demo.localhost".to_owned(),
                "/hello?x=1".to_owned(),
                vec!["feature-x".to_owned()],
                vec!["userId=alice".to_owned(), "lane=feature-x;ttl=3".to_owned()],
            )]
        );
        b.stop().await;
        stub.abort();
    }

    #[tokio::test]
    async fn drop_lane_header_forwards_neither() {
        let (router, seen, stub) = stub_router().await;
        let b = start(SampleArgs {
            drop_lane_header: true,
            ..proc_("b", Some("c"), Some(router))
        })
        .await;
        let (status, _, body) = get(
            b.addr,
            &[("x-lane", "feature-x"), ("baggage", "lane=feature-x")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("b (lane header: feature-x) -> "), "{body}");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "c.demo.localhost");
        assert!(seen[0].2.is_empty() && seen[0].3.is_empty(), "{seen:?}");
        b.stop().await;
        stub.abort();
    }

    /// a → b → c with each proc pointing straight at the next (no router in between), and a
    /// custom lane header name.
    #[tokio::test]
    async fn three_procs_chain() {
        let custom = |name: &str, next: Option<&str>, router: Option<SocketAddr>| SampleArgs {
            lane_header: "x-my-lane".into(),
            ..proc_(name, next, router)
        };
        let c = start(custom("c", None, None)).await;
        let b = start(custom("b", Some("c"), Some(c.addr))).await;
        let a = start(custom("a", Some("b"), Some(b.addr))).await;
        let (status, served, body) = get(a.addr, &[("x-my-lane", "Feature-X")]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(served.is_empty());
        assert_eq!(
            body,
            "a (lane header: Feature-X) -> b (lane header: Feature-X) -> c (lane header: Feature-X)\n"
        );
        a.stop().await;
        b.stop().await;
        c.stop().await;
    }

    #[tokio::test]
    async fn failed_hop_is_a_502_naming_it() {
        // A port with nothing listening: bind, learn the port, close.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let c = start(proc_("c", Some("d"), Some(dead))).await;
        let b = start(proc_("b", Some("c"), Some(c.addr))).await;
        let (status, _, body) = get(b.addr, &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.contains("next hop `d`"), "{body}");
        assert!(body.contains("cannot connect"), "{body}");
        b.stop().await;
        c.stop().await;
    }

    #[tokio::test]
    async fn next_hop_without_router_is_an_error() {
        if std::env::var_os(ROUTER_ADDR_ENV).is_some() {
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(listener, proc_("b", Some("c"), None), async {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains(ROUTER_ADDR_ENV), "{err}");
    }
}
