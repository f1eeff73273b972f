//! `RouterConfig::header_to_baggage`: a request with the lane header is forwarded with
//! `baggage: lane=<id>`, over HTTP/1.1 and h2c, against real backends on loopback.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{Got, Stop, backend, client, collect, ep, table};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lane_router::{Router, RouterConfig, Table, TableHandle};
use tokio::net::TcpListener;

async fn router_with(table: Table, header_to_baggage: bool) -> (SocketAddr, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RouterConfig {
        header_to_baggage,
        ..RouterConfig::default()
    };
    let router = Router::new(config, TableHandle::new(table));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(router.serve(listener, async move {
        let _ = rx.await;
    }));
    (addr, Stop::new(tx))
}

const HOST: &str = "b.demo.localhost";

#[derive(Clone, Copy, Debug)]
enum Proto {
    Http1,
    H2c,
}

/// `GET http://b.demo.localhost/` through the router at `addr` with `headers`.
async fn get(proto: Proto, addr: SocketAddr, headers: &[(&str, &str)]) -> Got {
    match proto {
        Proto::Http1 => common::get(&client(), addr, HOST, "/", headers).await,
        Proto::H2c => {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::get(format!("http://{HOST}/"))
                .version(http::Version::HTTP_2)
                .body(Empty::<Bytes>::new())
                .unwrap();
            for (k, v) in headers {
                req.headers_mut().append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            collect(send.send_request(req).await.unwrap()).await
        }
    }
}

#[tokio::test]
async fn the_lane_header_is_forwarded_as_baggage_too() {
    let (base, _b) = backend("b-base").await;
    let (lane, _l) = backend("b-lane").await;
    let t = table(
        vec![
            ep("demo.b", "baseline", true, base),
            ep("demo.b", "feature-x", true, lane),
        ],
        &[],
        1,
    );
    let (addr, _stop) = router_with(t, true).await;
    for proto in [Proto::Http1, Proto::H2c] {
        let seen = |got: &Got| got.header("x-seen-baggage").map(str::to_owned);
        let got = get(proto, addr, &[("x-lane", "feature-x")]).await;
        assert_eq!(got.body, "b-lane", "{proto:?}");
        assert_eq!(seen(&got).as_deref(), Some("lane=feature-x"), "{proto:?}");
        assert_eq!(got.header("x-seen-lane"), Some("feature-x"), "{proto:?}");

        // Other members are kept; a different lane entry gives way to the header's.
        let got = get(
            proto,
            addr,
            &[
                ("x-lane", "Feature-X"),
                ("baggage", "user=alice;p=1, lane=other"),
                ("baggage", "tenant=t1"),
            ],
        )
        .await;
        assert_eq!(got.body, "b-lane", "{proto:?}");
        assert_eq!(
            seen(&got).as_deref(),
            Some("user=alice;p=1,tenant=t1,lane=feature-x"),
            "{proto:?}"
        );

        // `baseline` in the header clears a baggage lane, as it did for this hop.
        let got = get(
            proto,
            addr,
            &[("x-lane", "baseline"), ("baggage", "lane=feature-x")],
        )
        .await;
        assert_eq!(got.body, "b-base", "{proto:?}");
        assert_eq!(seen(&got).as_deref(), Some("lane=baseline"), "{proto:?}");

        // Untouched: no lane header, an invalid one, or baggage that already agrees.
        let got = get(proto, addr, &[("baggage", "u=1,lane=feature-x")]).await;
        assert_eq!(got.body, "b-lane", "{proto:?}");
        assert_eq!(
            seen(&got).as_deref(),
            Some("u=1,lane=feature-x"),
            "{proto:?}"
        );
        let got = get(proto, addr, &[]).await;
        assert_eq!(seen(&got), None, "{proto:?}");
        let got = get(proto, addr, &[("x-lane", "Not_A_Lane"), ("baggage", "u=1")]).await;
        assert_eq!(got.body, "b-base", "{proto:?}");
        assert!(got.header("x-lane-invalid").is_some(), "{proto:?}");
        assert_eq!(seen(&got).as_deref(), Some("u=1"), "{proto:?}");
    }
}

#[tokio::test]
async fn without_the_option_baggage_is_left_alone() {
    let (base, _b) = backend("b-base").await;
    let (lane, _l) = backend("b-lane").await;
    let t = table(
        vec![
            ep("demo.b", "baseline", true, base),
            ep("demo.b", "feature-x", true, lane),
        ],
        &[],
        1,
    );
    let (addr, _stop) = router_with(t, false).await;
    for proto in [Proto::Http1, Proto::H2c] {
        let got = get(proto, addr, &[("x-lane", "feature-x")]).await;
        assert_eq!(got.body, "b-lane", "{proto:?}");
        assert_eq!(got.header("x-seen-baggage"), None, "{proto:?}");
        let got = get(
            proto,
            addr,
            &[("x-lane", "feature-x"), ("baggage", "lane=other")],
        )
        .await;
        assert_eq!(got.body, "b-lane", "{proto:?}");
        assert_eq!(
            got.header("x-seen-baggage"),
            Some("lane=other"),
            "{proto:?}"
        );
    }
}
