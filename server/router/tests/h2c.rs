//! HTTP/2 (h2c) clients and the protocol each service declares: an `http` service gets HTTP/1.1
//! upstream (a service that speaks only HTTP/1.1 answers an h2c client), a `grpc` service gets h2,
//! and trailers come through both ways.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lane_router::Protocol;
use lane_tests::{GreeterClient, HelloRequest};
use tokio::net::TcpListener;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A server that speaks only HTTP/1.1. It answers with the version and `Host` it saw and the
/// request body; `/trailers` answers chunked with a trailer.
async fn http1_only() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let version = format!("{:?}", req.version());
                let host = req
                    .headers()
                    .get("host")
                    .map(|h| h.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let trailers = req.uri().path() == "/trailers";
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let text = format!("{version} {host} {}", String::from_utf8_lossy(&body));
                let body: Body = if trailers {
                    let mut t = http::HeaderMap::new();
                    t.insert("x-checksum", "42".parse().unwrap());
                    BodyExt::boxed(Frames(
                        [Frame::data(Bytes::from(text)), Frame::trailers(t)].into(),
                    ))
                } else {
                    BodyExt::boxed(Full::new(Bytes::from(text)))
                };
                let mut resp = Response::new(body);
                if trailers {
                    // hyper sends only the trailer fields a response declares.
                    resp.headers_mut()
                        .insert("trailer", "x-checksum".parse().unwrap());
                }
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A body of ready frames (data, then trailers).
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

/// An h2c (prior knowledge) connection to the router at `addr`; requests name their service in
/// their URI's authority.
async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn an_h2c_client_reaches_an_http_1_1_only_service() {
    let up = http1_only().await;
    let r = router(table(vec![ep("demo.b", "baseline", true, up)], &[], 1)).await;
    r.table.set_protocols([(up, Protocol::Http)]);
    let mut client = h2c(r.addr).await;
    let authority = format!("b.demo.localhost:{}", r.addr.port());

    let req = Request::post(format!("http://{authority}/echo"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-lane-served-by"], "demo.b@baseline");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("HTTP/1.1 {authority} hello").as_bytes());

    // A chunked response's trailers reach the h2c client as HTTP/2 trailers.
    let req = Request::get(format!("http://{authority}/trailers"))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    assert!(collected.to_bytes().starts_with(b"HTTP/1.1 "));
}

#[tokio::test]
async fn without_a_declared_protocol_an_h2c_client_is_proxied_in_h2() {
    // The behaviour for table sources that do not say: the client's protocol. An HTTP/1.1-only
    // service cannot answer then; the 502 names it.
    let up = http1_only().await;
    let r = router(table(vec![ep("demo.b", "baseline", true, up)], &[], 1)).await;
    let authority = format!("b.demo.localhost:{}", r.addr.port());
    let req = Request::get(format!("http://{authority}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2c(r.addr).await.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 502);
    // Declared: served.
    r.table.set_protocols([(up, Protocol::Http)]);
    let req = Request::get(format!("http://{authority}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2c(r.addr).await.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_grpc_service_gets_h2_and_its_trailers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        lane_tests::serve(listener, "base", async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let _stop = Stop::new(tx);
    let r = router(table(
        vec![ep("demo.greeter", "baseline", true, base)],
        &[],
        1,
    ))
    .await;
    r.table.set_protocols([(base, Protocol::Grpc)]);
    let authority = format!("greeter.demo.localhost:{}", r.addr.port());
    let mut client = GreeterClient::connect_via(&format!("http://{}", r.addr), Some(&authority))
        .await
        .unwrap();
    // A unary call succeeds only if its `grpc-status` trailer arrives.
    let resp = client
        .hello(tonic::Request::new(HelloRequest { name: "ann".into() }))
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("x-lane-served-by").unwrap(),
        "demo.greeter@baseline"
    );
    assert_eq!(resp.into_inner().message, "hello ann from base");
}

/// A server that speaks only HTTP/2 (prior knowledge), answering with the version it saw.
async fn http2_only() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let text = format!("{:?} {}", req.version(), req.uri().path());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http_1_1_client_reaches_a_service_declared_grpc_over_h2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = http2_only().await;
    let (other, _s) = backend("c-base").await;
    let r = router(table(
        vec![
            ep("demo.g", "baseline", true, up),
            ep("demo.c", "baseline", true, other),
        ],
        &[],
        1,
    ))
    .await;
    r.table
        .set_protocols([(up, Protocol::Grpc), (other, Protocol::Http)]);
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    // Two requests on one connection, the second for an HTTP/1.1 service.
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: g.demo.localhost\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: c.demo.localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("HTTP/2.0 /one"), "{text}");
    assert!(text.contains("x-lane-served-by: demo.g@baseline"), "{text}");
    assert!(text.contains("c-base"), "{text}");
    assert!(text.contains("x-lane-served-by: demo.c@baseline"), "{text}");
    let traffic: Vec<(String, u64)> = r
        .router
        .traffic()
        .into_iter()
        .map(|t| (t.service.to_string(), t.requests))
        .collect();
    assert_eq!(
        traffic,
        [("demo.c".to_owned(), 1), ("demo.g".to_owned(), 1)],
        "each request counted once"
    );
}
