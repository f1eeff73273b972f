//! The router over real loopback sockets, HTTP/1.1 (and one plain h2c request): routing by lane
//! header and baggage, served-by, errors, admin endpoints and live table updates.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

const B: &str = "b.demo.localhost";

struct World {
    r: RunningRouter,
    host: String,
    client: Http1,
    _backends: Vec<Stop>,
    addrs: Vec<std::net::SocketAddr>,
}

/// demo.b: baseline `b-base`, lane feature-x `b-x`; lane `stacked` sits on feature-x.
/// demo.d: only an unhealthy baseline. demo.e: a baseline nothing listens on.
async fn world() -> World {
    let (base, s1) = backend("b-base").await;
    let (lane, s2) = backend("b-x").await;
    let dead = dead_addr().await;
    let t = table(
        vec![
            ep("demo.b", "baseline", true, base),
            ep("demo.b", "feature-x", true, lane),
            ep("demo.d", "baseline", false, base),
            ep("demo.e", "baseline", true, dead),
        ],
        &[("stacked", "feature-x")],
        3,
    );
    let r = router(t).await;
    let host = format!("{B}:{}", r.addr.port());
    World {
        r,
        host,
        client: client(),
        _backends: vec![s1, s2],
        addrs: vec![base, lane, dead],
    }
}

#[tokio::test]
async fn routes_by_lane_header_and_baggage_with_baseline_fallback() {
    let w = world().await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&[], "b-base", "demo.b@baseline"),
        (&[("x-lane", "feature-x")], "b-x", "demo.b@feature-x"),
        (&[("x-lane", " Feature-X ")], "b-x", "demo.b@feature-x"),
        (&[("x-lane", "stacked")], "b-x", "demo.b@feature-x"),
        (&[("x-lane", "other")], "b-base", "demo.b@baseline"),
        (&[("x-lane", "baseline")], "b-base", "demo.b@baseline"),
        (
            &[("baggage", "userId=7,lane=feature-x")],
            "b-x",
            "demo.b@feature-x",
        ),
        (
            &[("x-lane", "other"), ("baggage", "lane=feature-x")],
            "b-base",
            "demo.b@baseline",
        ),
    ];
    for (headers, body, served_by) in cases {
        let got = get(&w.client, w.r.addr, &w.host, "/", headers).await;
        assert_eq!(got.status, 200, "{headers:?}: {got:?}");
        assert_eq!(got.body, *body, "{headers:?}");
        assert_eq!(got.served_by(), *served_by, "{headers:?}");
        assert_eq!(got.header("x-lane-invalid"), None);
        // The lane header and baggage reach the app exactly as sent.
        for (k, v) in *headers {
            let seen = if *k == "x-lane" {
                "x-seen-lane"
            } else {
                "x-seen-baggage"
            };
            assert_eq!(got.header(seen), Some(v.trim()));
        }
        // The Host header is kept.
        assert_eq!(got.header("x-seen-host"), Some(w.host.as_str()));
    }
}

#[tokio::test]
async fn invalid_lane_value_goes_to_baseline_and_says_why() {
    let w = world().await;
    for (header, value, why) in [
        ("x-lane", "feature_x", "`_`"),
        ("x-lane", "a, b", "conflicting"),
        ("baggage", "lane=%zz", "percent"),
    ] {
        let got = get(&w.client, w.r.addr, &w.host, "/", &[(header, value)]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "b-base");
        assert_eq!(got.served_by(), "demo.b@baseline");
        let invalid = got.header("x-lane-invalid").unwrap();
        assert!(invalid.contains(why), "{value}: {invalid}");
    }
}

#[tokio::test]
async fn served_by_is_prepended_to_the_upstream_hops() {
    let w = world().await;
    let got = get(
        &w.client,
        w.r.addr,
        &w.host,
        "/hop",
        &[("x-lane", "feature-x")],
    )
    .await;
    assert_eq!(
        got.served_by(),
        "demo.b@feature-x, demo.c@baseline, demo.d@baseline"
    );
    assert_eq!(got.headers.get_all("x-lane-served-by").iter().count(), 1);
}

#[tokio::test]
async fn unknown_service_unhealthy_and_unreachable() {
    let w = world().await;
    let port = w.r.addr.port();

    let got = get(
        &w.client,
        w.r.addr,
        &format!("x.demo.localhost:{port}"),
        "/",
        &[],
    )
    .await;
    assert_eq!(got.status, 404);
    assert!(got.body.contains("demo.x"), "{}", got.body);
    assert!(got.body.contains("x.demo.localhost"), "{}", got.body);
    assert!(got.body.contains("demo.b, demo.d, demo.e"), "{}", got.body);

    let got = get(
        &w.client,
        w.r.addr,
        &format!("a.b.c.localhost:{port}"),
        "/",
        &[],
    )
    .await;
    assert_eq!(got.status, 404);
    assert!(got.body.contains("<proc>.<app>.localhost"), "{}", got.body);

    let got = get(
        &w.client,
        w.r.addr,
        &format!("d.demo.localhost:{port}"),
        "/",
        &[],
    )
    .await;
    assert_eq!(got.status, 503);
    assert!(got.body.contains("no healthy instance"), "{}", got.body);
    let got = get(
        &w.client,
        w.r.addr,
        &format!("d.demo.localhost:{port}"),
        "/",
        &[("x-lane", "feature-x")],
    )
    .await;
    assert_eq!(got.status, 503);
    assert!(got.body.contains("feature-x"), "{}", got.body);

    let dead = w.addrs[2];
    let got = get(
        &w.client,
        w.r.addr,
        &format!("e.demo.localhost:{port}"),
        "/",
        &[],
    )
    .await;
    assert_eq!(got.status, 502);
    assert!(got.body.contains(&dead.to_string()), "{}", got.body);
    assert!(got.body.contains("demo.e@baseline"), "{}", got.body);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_bodies_forwarded() {
    let w = world().await;
    let got = send(
        &w.client,
        "POST",
        w.r.addr,
        &w.host,
        "/",
        &[("connection", "x-secret"), ("x-secret", "1")],
        "payload",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "b-base got payload");
    assert_eq!(got.header("x-seen-secret"), None);
}

#[tokio::test]
async fn the_client_address_is_appended_to_x_forwarded_for() {
    let w = world().await;
    let got = get(&w.client, w.r.addr, &w.host, "/", &[]).await;
    assert_eq!(got.header("x-seen-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-seen-forwarded-proto"), Some("http"));
    let got = get(
        &w.client,
        w.r.addr,
        &w.host,
        "/",
        &[
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(
        got.header("x-seen-forwarded-for"),
        Some("10.1.2.3, 127.0.0.1")
    );
    assert_eq!(got.header("x-seen-forwarded-proto"), Some("https"));

    // h2c too.
    let mut send = h2c(w.r.addr).await;
    let req = http::Request::get(format!("http://{}/", w.host))
        .version(http::Version::HTTP_2)
        .header("x-forwarded-for", "10.1.2.3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(
        resp.headers()["x-seen-forwarded-for"],
        "10.1.2.3, 127.0.0.1"
    );
    assert_eq!(resp.headers()["x-seen-forwarded-proto"], "http");
}

#[tokio::test]
async fn round_robin_across_instances() {
    let (a, _s1) = backend("one").await;
    let (b, _s2) = backend("two").await;
    let r = router(table(
        vec![
            ep("demo.b", "baseline", true, a),
            ep("demo.b", "baseline", true, b),
        ],
        &[],
        1,
    ))
    .await;
    let c = client();
    let host = format!("{B}:{}", r.addr.port());
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&c, r.addr, &host, "/", &[]).await.body);
    }
    bodies.sort();
    assert_eq!(bodies, ["one", "one", "two", "two"]);
}

#[tokio::test]
async fn admin_endpoints_and_metrics() {
    let w = world().await;
    for _ in 0..2 {
        get(
            &w.client,
            w.r.addr,
            &w.host,
            "/",
            &[("x-lane", "feature-x")],
        )
        .await;
    }
    get(&w.client, w.r.addr, &w.host, "/", &[]).await;
    let port = w.r.addr.port();
    get(
        &w.client,
        w.r.addr,
        &format!("x.demo.localhost:{port}"),
        "/",
        &[],
    )
    .await;

    for host in [format!("127.0.0.1:{port}"), "localhost".to_owned()] {
        let got = get(&w.client, w.r.addr, &host, "/healthz", &[]).await;
        assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "ok\n"));
    }
    let got = get(&w.client, w.r.addr, "localhost", "/metrics", &[]).await;
    assert_eq!(got.status, 200);
    for line in [
        "lane_router_up 1",
        "lane_router_table_generation 3",
        "lane_router_requests_total{service=\"demo.b\",lane=\"feature-x\"} 2",
        "lane_router_requests_total{service=\"demo.b\",lane=\"baseline\"} 1",
        "lane_router_responses_total{code=\"200\"} 3",
        "lane_router_responses_total{code=\"404\"} 1",
    ] {
        assert!(got.body.lines().any(|l| l == line), "{line}\n{}", got.body);
    }
    let traffic: Vec<(String, String, u64)> =
        w.r.router
            .traffic()
            .into_iter()
            .map(|t| (t.service.to_string(), t.lane.to_string(), t.requests))
            .collect();
    assert_eq!(
        traffic,
        [
            ("demo.b".to_owned(), "baseline".to_owned(), 1),
            ("demo.b".to_owned(), "feature-x".to_owned(), 2)
        ]
    );
    let got = get(&w.client, w.r.addr, "localhost", "/nope", &[]).await;
    assert_eq!(got.status, 404);
    assert!(got.body.contains("/healthz"));
}

#[tokio::test]
async fn table_update_applies_to_the_next_request_and_spares_in_flight_ones() {
    let w = world().await;
    let (new_base, _s) = backend("b-new").await;

    // A slow request starts on the old table…
    let (c, addr, host) = (w.client.clone(), w.r.addr, w.host.clone());
    let slow = tokio::spawn(async move { get(&c, addr, &host, "/slow?ms=600", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    // …the table changes under it: demo.b's baseline moves, the lane goes away.
    w.r.table.update(table(
        vec![ep("demo.b", "baseline", true, new_base)],
        &[],
        4,
    ));
    let got = get(
        &w.client,
        w.r.addr,
        &w.host,
        "/",
        &[("x-lane", "feature-x")],
    )
    .await;
    assert_eq!(
        (got.body.as_str(), got.served_by()),
        ("b-new", "demo.b@baseline")
    );
    assert_eq!(w.r.table.current().generation(), 4);

    let slow = slow.await.unwrap();
    assert_eq!((slow.status.as_u16(), slow.body.as_str()), (200, "b-base"));

    // Removing the service entirely: the next request is a 404, no restart involved.
    w.r.table.update(table(vec![], &[], 5));
    let got = get(&w.client, w.r.addr, &w.host, "/", &[]).await;
    assert_eq!(got.status, 404);
}

/// An h2c (prior knowledge) client connection to `addr`.
async fn h2c(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn h2c_requests_are_routed_too() {
    let w = world().await;
    let mut send = h2c(w.r.addr).await;
    for (lane, body, served_by) in [
        (None, "b-base", "demo.b@baseline"),
        (Some("feature-x"), "b-x", "demo.b@feature-x"),
    ] {
        let mut req = http::Request::get(format!("http://{}/", w.host))
            .version(http::Version::HTTP_2)
            .body(Empty::<Bytes>::new())
            .unwrap();
        if let Some(lane) = lane {
            req.headers_mut().insert("x-lane", lane.parse().unwrap());
        }
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-lane-served-by"], served_by);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, body);
    }
}

/// A backend that closes its connection after every response (HTTP/1.1 without keep-alive).
async fn closing_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"once"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, task)
}

#[tokio::test]
async fn upstream_connections_that_close_are_replaced_on_one_downstream_connection() {
    let (closing, task) = closing_backend().await;
    let (keeping, _s) = backend("keeps").await;
    let r = router(table(
        vec![
            ep("demo.b", "baseline", true, closing),
            ep("demo.b", "feature-x", true, keeping),
        ],
        &[],
        1,
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // One keep-alive downstream connection; its upstream connections change target and close.
    for i in 0..12 {
        let lane = if i % 3 == 2 { "feature-x" } else { "baseline" };
        let req = http::Request::get("/")
            .header("host", B)
            .header("x-lane", lane)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let want: &[u8] = if lane == "baseline" {
            b"once"
        } else {
            b"keeps"
        };
        assert_eq!(body, want, "request {i}");
    }
    task.abort();
}
