//! The resolver against the Consul test double (`lane_tests::consul`): real HTTP and gRPC servers
//! registered as baseline and lane instances, a hyper client (HTTP/1.1) and a tonic client (h2c)
//! wrapped in `LaneLayer`, routing by the lane of each request, the lane travelling on from the
//! incoming request, and a critical instance leaving the lists.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lane_core::{LaneValue, ServiceId};
use lane_resolver::{IncomingLane, LaneLayer, Resolver, incoming};
use lane_tests::consul::{ConsulDouble, Options};
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

fn register(consul: &ConsulDouble, id: &str, name: &str, tags: &[&str], port: u16) {
    let body = json!({
        "ID": id, "Name": name, "Tags": tags, "Address": "127.0.0.1", "Port": port,
        "Check": {"TCP": format!("127.0.0.1:{port}"), "Interval": "1s", "Status": "passing"},
    });
    let (status, text) = consul
        .http(
            "PUT",
            "/v1/agent/service/register",
            None,
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
}

fn put_lane(consul: &ConsulDouble, id: &str) {
    let doc = json!({"id": id, "owner": "dev", "created": 0, "expires": 4_000_000_000u64});
    let (status, _) = consul
        .http(
            "PUT",
            &format!("/v1/kv/gaia-lane/lanes/{id}"),
            None,
            doc.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200);
}

/// An HTTP server answering `<name> saw x-lane=<value>`.
async fn http_server(name: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let lane = req
                            .headers()
                            .get("x-lane")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(format!("{name} saw x-lane={lane}")),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn resolver(consul: &ConsulDouble) -> Resolver {
    let settings = lane_consul::Settings::from_lookup(&lane_consul::Options::default(), |k| {
        (k == "CONSUL_HTTP_ADDR").then(|| consul.addr().to_string())
    })
    .unwrap();
    let client = lane_consul::client::Client::new(settings).unwrap();
    Resolver::follow_consul(client, Duration::from_secs(30)).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_go_to_their_lane_and_the_lane_travels_on() {
    let consul = ConsulDouble::start(Options::default()).unwrap();
    let base = http_server("baseline").await;
    let mine = http_server("feature-x").await;
    put_lane(&consul, "feature-x");
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", &[], base);
    register(
        &consul,
        "gaia-lane.demo.b-feature-x",
        "gaia-lane.demo.b",
        &["lane=feature-x"],
        mine,
    );
    let resolver = resolver(&consul);
    let svc: ServiceId = "demo.b".parse().unwrap();
    let lane = LaneValue::Lane("feature-x".parse().unwrap());
    wait_until(
        "both instance lists",
        || matches!(resolver.pick(&svc, &lane), Ok((l, _)) if l.lane().is_some()),
    )
    .await;

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut svc_client = LaneLayer::new(resolver.clone()).layer(client);
    let mut get = async |lane: Option<&str>| -> String {
        let mut req = http::Request::builder().uri("http://b.demo/hello");
        if let Some(l) = lane {
            req = req.header("x-lane", l);
        }
        let resp = svc_client
            .call(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    };
    assert_eq!(
        get(Some("feature-x")).await,
        "feature-x saw x-lane=feature-x"
    );
    assert_eq!(
        get(Some("FEATURE-X")).await,
        "feature-x saw x-lane=FEATURE-X"
    );
    assert_eq!(get(None).await, "baseline saw x-lane=");
    assert_eq!(get(Some("other")).await, "baseline saw x-lane=other");
    assert_eq!(
        get(Some("not a lane!")).await,
        "baseline saw x-lane=not a lane!"
    );

    // Inside the handling of an incoming request of lane feature-x, an outgoing call without a
    // lane of its own goes to the lane and carries it on.
    let mut headers = http::HeaderMap::new();
    headers.insert("baggage", "lane=feature-x,user=7".parse().unwrap());
    let got = incoming(
        IncomingLane::from_headers(&headers, &lane_resolver::DEFAULT_LANE_HEADER),
        get(None),
    )
    .await;
    assert_eq!(got, "feature-x saw x-lane=");

    // The lane instance turns critical: its lane falls back to baseline.
    assert!(consul.force_check("gaia-lane.demo.b-feature-x", "critical"));
    wait_until(
        "the critical instance to leave",
        || matches!(resolver.pick(&svc, &lane), Ok((l, _)) if l.lane().is_none()),
    )
    .await;
    assert_eq!(
        get(Some("feature-x")).await,
        "baseline saw x-lane=feature-x"
    );

    // A service nobody registered is a clear error.
    let err = svc_client
        .call(
            http::Request::builder()
                .uri("http://z.demo/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no instance of demo.z"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_over_the_layer_routes_grpc_calls_by_lane() {
    let consul = ConsulDouble::start(Options::default()).unwrap();
    let mut ports = Vec::new();
    for name in ["greeter-baseline", "greeter-feature-x"] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(l.local_addr().unwrap().port());
        tokio::spawn(lane_tests::serve(l, name, std::future::pending()));
    }
    put_lane(&consul, "feature-x");
    register(
        &consul,
        "gaia.demo.greeter-1",
        "gaia.demo.greeter",
        &[],
        ports[0],
    );
    register(
        &consul,
        "gaia-lane.demo.greeter-feature-x",
        "gaia-lane.demo.greeter",
        &["lane=feature-x"],
        ports[1],
    );
    let resolver = resolver(&consul);
    let svc: ServiceId = "demo.greeter".parse().unwrap();
    let lane = LaneValue::Lane("feature-x".parse().unwrap());
    wait_until(
        "both instance lists",
        || matches!(resolver.pick(&svc, &lane), Ok((l, _)) if l.lane().is_some()),
    )
    .await;
    let h2c: Client<_, tonic::body::Body> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let channel = LaneLayer::new(resolver).for_service(svc).layer(h2c);
    let mut grpc =
        tonic::client::Grpc::with_origin(channel, "http://greeter.demo".parse().unwrap());
    for (lane, want) in [
        (Some("feature-x"), "greeter-feature-x"),
        (None, "greeter-baseline"),
    ] {
        let mut req = tonic::Request::new(lane_tests::HelloRequest { name: "x".into() });
        if let Some(l) = lane {
            req.metadata_mut().insert("x-lane", l.parse().unwrap());
        }
        grpc.ready().await.unwrap();
        let reply = grpc
            .unary(
                req,
                http::uri::PathAndQuery::from_static(lane_tests::HELLO_PATH),
                tonic_prost::ProstCodec::<lane_tests::HelloRequest, lane_tests::HelloReply>::default(),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.server, want);
        assert_eq!(reply.lane, lane.unwrap_or(""));
    }
}

/// Registers with the address `host` (a DNS name) and a TTL check that passes.
fn register_named(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    tags: &[&str],
    host: &str,
    port: u16,
) {
    let body = json!({
        "ID": id, "Name": name, "Tags": tags, "Address": host, "Port": port,
        "Check": {"TTL": "10m", "Status": "passing"},
    });
    let (status, text) = consul
        .http(
            "PUT",
            "/v1/agent/service/register",
            None,
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_with_a_dns_name_are_resolved_and_an_unresolvable_one_is_left_out() {
    let consul = ConsulDouble::start(Options::default()).unwrap();
    let base = http_server("baseline").await;
    let mine = http_server("feature-x").await;
    put_lane(&consul, "feature-x");
    put_lane(&consul, "feature-y");
    register_named(
        &consul,
        "gaia.demo.b-1",
        "gaia.demo.b",
        &[],
        "localhost",
        base,
    );
    register_named(
        &consul,
        "gaia-lane.demo.b-feature-x",
        "gaia-lane.demo.b",
        &["lane=feature-x"],
        "localhost",
        mine,
    );
    // `.invalid` never resolves (RFC 2606).
    register_named(
        &consul,
        "gaia-lane.demo.b-feature-y",
        "gaia-lane.demo.b",
        &["lane=feature-y"],
        "no-such-host.invalid",
        mine,
    );
    let resolver = resolver(&consul);
    let svc: ServiceId = "demo.b".parse().unwrap();
    let x = LaneValue::Lane("feature-x".parse().unwrap());
    let y = LaneValue::Lane("feature-y".parse().unwrap());
    wait_until(
        "the lane instance at localhost",
        || matches!(resolver.pick(&svc, &x), Ok((l, _)) if l.lane().is_some()),
    )
    .await;
    let (_, addr) = resolver.pick(&svc, &x).unwrap();
    assert!(addr.ip().is_loopback() && addr.port() == mine, "{addr}");
    let (l, addr) = resolver.pick(&svc, &LaneValue::Absent).unwrap();
    assert!(l.lane().is_none() && addr.port() == base, "{addr}");
    // feature-y's only instance does not resolve: its requests fall back to baseline.
    let (l, addr) = resolver.pick(&svc, &y).unwrap();
    assert!(l.lane().is_none() && addr.port() == base, "{addr}");

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut svc_client = LaneLayer::new(resolver.clone()).layer(client);
    let resp = svc_client
        .call(
            http::Request::builder()
                .uri("http://b.demo/")
                .header("x-lane", "feature-x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "feature-x saw x-lane=feature-x");
}
