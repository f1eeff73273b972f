//! gRPC through the router: a real tonic server and client (unary), h2c, with and without the lane
//! header; served-by arrives in the response metadata (headers, not trailers).

mod common;

use common::*;
use lane_tests::{GreeterClient, HelloRequest};
use tokio::net::TcpListener;

async fn greeter(name: &'static str) -> (std::net::SocketAddr, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        lane_tests::serve(listener, name, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, Stop::new(tx))
}

fn hello(name: &str, lane: Option<&str>) -> tonic::Request<HelloRequest> {
    let mut req = tonic::Request::new(HelloRequest { name: name.into() });
    if let Some(lane) = lane {
        req.metadata_mut().insert("x-lane", lane.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn unary_calls_are_routed_by_lane() {
    let (base, _s1) = greeter("base").await;
    let (lane, _s2) = greeter("lane-x").await;
    let r = router(table(
        vec![
            ep("demo.greeter", "baseline", true, base),
            ep("demo.greeter", "feature-x", true, lane),
        ],
        &[],
        1,
    ))
    .await;
    let authority = format!("greeter.demo.localhost:{}", r.addr.port());
    let mut client = GreeterClient::connect_via(&format!("http://{}", r.addr), Some(&authority))
        .await
        .unwrap();

    for (lane, server, served_by) in [
        (None, "base", "demo.greeter@baseline"),
        (Some("feature-x"), "lane-x", "demo.greeter@feature-x"),
        (Some("other"), "base", "demo.greeter@baseline"),
        (Some("Bad_Lane"), "base", "demo.greeter@baseline"),
    ] {
        let resp = client.hello(hello("ann", lane)).await.unwrap();
        let md = resp.metadata().clone();
        let reply = resp.into_inner();
        assert_eq!(reply.server, server, "{lane:?}");
        assert_eq!(reply.message, format!("hello ann from {server}"));
        assert_eq!(
            reply.lane,
            lane.unwrap_or(""),
            "the lane header travels as is"
        );
        assert_eq!(md.get("x-lane-served-by").unwrap(), served_by);
        assert_eq!(md.get("x-greeter").unwrap(), server);
        assert_eq!(md.get("x-lane-invalid").is_some(), lane == Some("Bad_Lane"));
    }

    // Direct to the server (no router): no served-by.
    let mut direct = GreeterClient::connect_via(&format!("http://{base}"), None)
        .await
        .unwrap();
    let resp = direct.hello(hello("bob", None)).await.unwrap();
    assert!(resp.metadata().get("x-lane-served-by").is_none());

    let traffic: Vec<(String, u64)> = r
        .router
        .traffic()
        .into_iter()
        .map(|t| (t.lane.to_string(), t.requests))
        .collect();
    assert_eq!(
        traffic,
        [("baseline".to_owned(), 3), ("feature-x".to_owned(), 1)]
    );
}

#[tokio::test]
async fn grpc_errors_pass_through_and_unknown_services_fail_cleanly() {
    let (base, _s1) = greeter("base").await;
    let r = router(table(
        vec![ep("demo.greeter", "baseline", true, base)],
        &[],
        1,
    ))
    .await;
    // Unknown service: the router's 404 becomes a gRPC error on the client, not a hang.
    let authority = format!("nobody.demo.localhost:{}", r.addr.port());
    let mut client = GreeterClient::connect_via(&format!("http://{}", r.addr), Some(&authority))
        .await
        .unwrap();
    let err = client.hello(hello("ann", None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("demo.nobody"), "{err:?}");

    // A lane-only service without the lane: UNAVAILABLE, with the router's reason.
    r.table.update(table(
        vec![ep("demo.greeter", "feature-x", true, base)],
        &[],
        2,
    ));
    let authority = format!("greeter.demo.localhost:{}", r.addr.port());
    let mut client = GreeterClient::connect_via(&format!("http://{}", r.addr), Some(&authority))
        .await
        .unwrap();
    let err = client.hello(hello("ann", None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no healthy instance"), "{err:?}");
    let ok = client.hello(hello("ann", Some("feature-x"))).await.unwrap();
    assert_eq!(ok.into_inner().server, "base");
}
