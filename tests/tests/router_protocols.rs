//! The agent's router speaks to each service in the protocol its `lane.toml` declares: an h2c
//! client reaches an `http` service (the sample service speaks only HTTP/1.1).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestEnv, sample_manifest};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[test]
fn an_h2c_client_reaches_an_http_1_1_service_through_the_agent() {
    let env = TestEnv::new("router-h2c", 90);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.ok_in(&b, &["deploy", "--lane", "feature-h"]);
    let router = env.router();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let stream = tokio::net::TcpStream::connect(router).await.unwrap();
            let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let req = http::Request::get(format!("http://b.demo.localhost:{}/", router.port()))
                .header("x-lane", "feature-h")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status();
            let served_by = resp.headers().get("x-lane-served-by").cloned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, 200, "{body}");
            assert_eq!(served_by.unwrap(), "demo.b@feature-h", "{body}");
        })
        .await
        .expect("the h2c request finishes within 30 s");
    });
    drop(rt);
    env.finish();
}
