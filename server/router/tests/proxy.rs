//! `lane proxy` over loopback: absolute-form requests get the current lane header; baseline removes
//! it; CONNECT is refused with 501; `*.localhost` hosts reach the local router.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use lane_core::LaneRef;
use lane_router::{DEFAULT_LANE_HEADER, proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start_proxy(lane: Arc<Mutex<LaneRef>>) -> (std::net::SocketAddr, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy::serve(
        listener,
        DEFAULT_LANE_HEADER,
        move || lane.lock().unwrap().clone(),
        async {
            let _ = rx.await;
        },
    ));
    (addr, Stop::new(tx))
}

/// Sends `GET <uri>` to the proxy (absolute form, as HTTP_PROXY clients do).
async fn via_proxy(proxy: std::net::SocketAddr, uri: &str, headers: &[(&str, &str)]) -> Got {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let parsed: http::Uri = uri.parse().unwrap();
    let mut req = http::Request::get(uri)
        .header("host", parsed.authority().unwrap().as_str())
        .body(Full::<Bytes>::default())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    collect(send.send_request(req).await.unwrap()).await
}

#[tokio::test]
async fn sets_the_current_lane_and_baseline_removes_it() {
    let (backend_addr, _b) = backend("app").await;
    let lane = Arc::new(Mutex::new(LaneRef::Lane("feature-x".parse().unwrap())));
    let (proxy, _p) = start_proxy(lane.clone()).await;
    let uri = format!("http://{backend_addr}/x?y=1");

    let got = via_proxy(proxy, &uri, &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "app"));
    assert_eq!(got.header("x-seen-lane"), Some("feature-x"));

    // The request's own value is overwritten: the proxy's choice is the developer's choice.
    let got = via_proxy(proxy, &uri, &[("x-lane", "other")]).await;
    assert_eq!(got.header("x-seen-lane"), Some("feature-x"));

    // A traffic switch takes effect on the next request.
    *lane.lock().unwrap() = LaneRef::Baseline;
    let got = via_proxy(proxy, &uri, &[("x-lane", "other")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-seen-lane"), None);
}

#[tokio::test]
async fn service_hosts_reach_the_router_with_the_lane() {
    let (base, _s1) = backend("b-base").await;
    let (lane_b, _s2) = backend("b-x").await;
    let r = router(table(
        vec![
            ep("demo.b", "baseline", true, base),
            ep("demo.b", "feature-x", true, lane_b),
        ],
        &[],
        1,
    ))
    .await;
    let lane = Arc::new(Mutex::new(LaneRef::Lane("feature-x".parse().unwrap())));
    let (proxy, _p) = start_proxy(lane.clone()).await;
    // b.demo.localhost resolves to loopback inside the proxy, without DNS.
    let uri = format!("http://b.demo.localhost:{}/", r.addr.port());
    let got = via_proxy(proxy, &uri, &[]).await;
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "b-x"));
    assert_eq!(got.served_by(), "demo.b@feature-x");
    *lane.lock().unwrap() = LaneRef::Baseline;
    let got = via_proxy(proxy, &uri, &[]).await;
    assert_eq!(got.served_by(), "demo.b@baseline");
}

#[tokio::test]
async fn connect_is_refused_and_origin_form_is_explained() {
    let lane = Arc::new(Mutex::new(LaneRef::Baseline));
    let (proxy, _p) = start_proxy(lane).await;

    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 501"), "{text}");
    assert!(text.contains("cannot add the lane header"), "{text}");

    let c = client();
    let got = get(&c, proxy, "localhost", "/x", &[]).await;
    assert_eq!(got.status, 400);
    assert!(got.body.contains("HTTP_PROXY"), "{}", got.body);

    let dead = dead_addr().await;
    let got = via_proxy(proxy, &format!("http://{dead}/"), &[]).await;
    assert_eq!(got.status, 502);
    assert!(got.body.contains(&dead.to_string()), "{}", got.body);
}
