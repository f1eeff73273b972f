//! The router's timeouts and connection cap, against real stalled sockets: clients that send half a
//! head or nothing, idle keep-alive connections, upstreams that never accept or never answer, and
//! more connections than the cap. Each test configures small limits so that it ends quickly.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use lane_router::{Limits, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const B: &str = "b.demo.localhost";

fn config(limits: Limits) -> RouterConfig {
    RouterConfig {
        limits,
        ..RouterConfig::default()
    }
}

/// Everything the peer sends until it closes (or `within` passes: `None`).
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(got)
}

/// Reads one response with a `Content-Length` body: (status, head, body).
async fn response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(len) = resp.parse(&buf).unwrap() {
            let length: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            let code = resp.code.unwrap();
            if buf.len() >= len + length {
                let head = String::from_utf8_lossy(&buf[..len]).into_owned();
                let body = String::from_utf8_lossy(&buf[len..len + length]).into_owned();
                return (code, head, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn half_sent_heads_get_408_and_silent_connections_are_closed() {
    let (base, _s) = backend("b-base").await;
    let limits = Limits {
        head_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, base)], &[], 1),
    )
    .await;

    // 40 stalled clients: half send part of a head, half nothing at all.
    let mut stalled = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n").as_bytes())
                .await
                .unwrap();
        }
        stalled.push((i % 2 == 0, s));
    }
    // A slow client that keeps dripping bytes is still held to the head timeout.
    let mut drip = TcpStream::connect(r.addr).await.unwrap();
    let dripping = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: b.demo.localhost\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if drip.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_until_closed(&mut drip, Duration::from_secs(10)).await
    });
    // A client that sends its head in two parts, well within the timeout, is served.
    let mut slow = TcpStream::connect(r.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    slow.write_all(format!("Host: {B}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = response(&mut slow).await;
    assert_eq!((status, body.as_str()), (200, "b-base"));

    for (partial, mut s) in stalled {
        let got = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("a stalled connection is closed");
        let text = String::from_utf8_lossy(&got);
        if partial {
            assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
            assert!(text.contains("LANE_ROUTER_HEAD_TIMEOUT"), "{text}");
            assert!(text.contains("connection: close"), "{text}");
        } else {
            assert!(got.is_empty(), "{text}");
        }
    }
    let got = dripping
        .await
        .unwrap()
        .expect("the dripping client is cut off");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (base, _s) = backend("b-base").await;
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, base)], &[], 1),
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    // Requests in quick succession keep the connection.
    for _ in 0..3 {
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, head, body) = response(&mut s).await;
        assert_eq!((status, body.as_str()), (200, "b-base"));
        assert!(!head.contains("connection: close"), "{head}");
    }
    // Then nothing: the router closes, without a word.
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("an idle connection is closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

/// An upstream that reads requests and never answers (it keeps the connection open).
async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_a_504_naming_the_instance() {
    let up = silent_upstream().await;
    let limits = Limits {
        response_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "lane-a", true, up)], &[], 1),
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\nx-lane: lane-a\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = response(&mut s).await;
    assert_eq!(status, 504, "{head}{body}");
    assert!(
        body.contains(&format!("demo.b@lane-a at {up} timed out")),
        "{body}"
    );
    assert!(body.contains("LANE_ROUTER_RESPONSE_TIMEOUT"), "{body}");
    assert!(head.contains("x-lane-served-by: demo.b@lane-a"), "{head}");
    // The connection goes on: the router's own endpoint answers on it.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut s).await.0, 200);

    // The same with a request body still streaming when the request is forwarded.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: {B}\r\nx-lane: lane-a\r\nContent-Length: 10\r\n\r\nhello"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"world").await.unwrap();
    let (status, _, body) = response(&mut s).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timed out"), "{body}");
}

#[tokio::test]
async fn an_upstream_that_never_accepts_gets_a_504() {
    // A listener whose accept queue is full and never drained: further connects hang in SYN-SENT.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let up = listener.local_addr().unwrap();
    let mut filling = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(up)).await {
            Ok(Ok(s)) => filling.push(s),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => break,
        }
        assert!(filling.len() < 64, "the accept queue never filled");
    }
    let limits = Limits {
        connect_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, up)], &[], 1),
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = response(&mut s).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains(&format!("demo.b@baseline at {up} timed out")),
        "{body}"
    );
    assert!(body.contains("LANE_ROUTER_CONNECT_TIMEOUT"), "{body}");
    drop(listener);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_a_503_that_says_so() {
    let (base, _s) = backend("b-base").await;
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, base)], &[], 1),
    )
    .await;
    let request = format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(response(&mut s).await.0, 200);
        open.push(s);
    }
    let mut over = TcpStream::connect(r.addr).await.unwrap();
    over.write_all(request.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut over, Duration::from_secs(10))
        .await
        .expect("the refused connection is closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("too many connections: 3 are open"), "{text}");
    assert!(text.contains("LANE_ROUTER_MAX_CONNECTIONS"), "{text}");

    // The open ones still work; once one closes, a new connection is served.
    let mut first = open.remove(0);
    first.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(response(&mut first).await.0, 200);
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        if response(&mut s).await.0 == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed place is given to a new connection");
}

#[tokio::test]
async fn connections_are_served_on_worker_threads_when_asked() {
    let (base, _s) = backend("b-base").await;
    let limits = Limits {
        workers: 2,
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, base)], &[], 1),
    )
    .await;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(TcpStream::connect(r.addr).await.unwrap());
    }
    for _ in 0..3 {
        for s in &mut conns {
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let (status, _, body) = response(s).await;
            assert_eq!((status, body.as_str()), (200, "b-base"));
        }
    }
    // The workers' timers run too: idle connections are closed.
    for s in &mut conns {
        let got = read_until_closed(s, Duration::from_secs(10))
            .await
            .expect("closed when idle");
        assert!(got.is_empty());
    }
    assert_eq!(r.router.traffic()[0].requests, 12);
}

/// An HTTP/1.1 upstream that answers every request with `ab`, `cd`, `ef` in three parts, `gap`
/// apart (a slow response body).
async fn slow_body_upstream(gap: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    let head = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n";
                    for part in [head, "ab", "cd", "ef"] {
                        if s.write_all(part.as_bytes()).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn idle_h2c_connections_are_closed_but_busy_ones_are_not() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = slow_body_upstream(Duration::from_millis(250)).await;
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, up)], &[], 1),
    )
    .await;
    r.table.set_protocols([(up, lane_router::Protocol::Http)]);
    let stream = TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<bytes::Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    let mut conn = tokio::spawn(conn);
    let uri = format!("http://{B}:{}/", r.addr.port());
    // A response that takes longer than the idle timeout (its stream is open all along) comes
    // whole, and so does another one on the same connection.
    for _ in 0..2 {
        let resp = send
            .send_request(http::Request::get(&uri).body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abcdef");
    }
    assert!(!conn.is_finished());
    // Then nothing: the router closes the connection (GOAWAY, then close) after the idle timeout.
    let ended = tokio::time::timeout(Duration::from_secs(10), &mut conn)
        .await
        .expect("an idle h2c connection is closed");
    assert!(ended.unwrap().is_ok(), "closed cleanly, with a GOAWAY");
    assert!(
        send.send_request(http::Request::get(&uri).body(Full::default()).unwrap())
            .await
            .is_err()
    );
}

/// An upstream that takes one connection, sends `answer` (nothing if empty) once it has a request
/// head, and then reads on; reports everything it read once the router closes the connection.
async fn stalling_upstream(
    answer: &'static str,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut answered = answer.is_empty();
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if !answered && got.windows(4).any(|w| w == b"\r\n\r\n") {
                answered = true;
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        }
        let _ = tx.send(got);
    });
    (addr, rx)
}

#[tokio::test]
async fn a_client_that_stalls_its_body_gets_408_and_both_connections_close() {
    let (up, upstream_saw) = stalling_upstream("").await;
    let limits = Limits {
        body_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, up)], &[], 1),
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 10\r\n\r\nhel").as_bytes(),
    )
    .await
    .unwrap();
    // More of the body, each part well within the timeout, then nothing.
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.write_all(b"lo").await.unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the stalled client's connection is closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("LANE_ROUTER_BODY_TIMEOUT"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // The upstream connection is closed too, having had what the client sent.
    let seen = tokio::time::timeout(Duration::from_secs(10), upstream_saw)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&seen).ends_with("\r\n\r\nhello"));
    assert!(
        r.router
            .metrics()
            .contains("lane_router_body_timeouts_total{side=\"client\"} 1\n"),
        "{}",
        r.router.metrics()
    );
}

/// A router with a 600 ms body timeout in front of two upstreams: `demo.b`, which sends a head
/// and half its body and then stalls, and `demo.c`, which sends its body in parts 150 ms apart
/// (each within the timeout). Also: the stalled upstream's address, the slow one's, and what the
/// stalled one read, once the router closes its connection.
async fn upstream_body_stall_router() -> (
    RunningRouter,
    SocketAddr,
    SocketAddr,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    let (stalled, upstream_saw) =
        stalling_upstream("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello").await;
    let slow = slow_body_upstream(Duration::from_millis(150)).await;
    let limits = Limits {
        body_timeout: Duration::from_millis(600),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(
            vec![
                ep("demo.b", "baseline", true, stalled),
                ep("demo.c", "baseline", true, slow),
            ],
            &[],
            1,
        ),
    )
    .await;
    (r, stalled, slow, upstream_saw)
}

#[tokio::test]
async fn an_upstream_that_stalls_its_body_has_the_client_connection_cut() {
    let (r, _, _, upstream_saw) = upstream_body_stall_router().await;
    // A body that comes slowly, each part within the timeout, comes whole (the timeout is
    // between two reads, not for the whole body).
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: c.demo.localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, _, body) = response(&mut s).await;
    assert_eq!((status, body.as_str()), (200, "abcdef"));

    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the client's connection is cut");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    let seen = tokio::time::timeout(Duration::from_secs(10), upstream_saw)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&seen).starts_with("GET / HTTP/1.1\r\n"));
    let metrics = r.router.metrics();
    assert!(
        metrics.contains("lane_router_body_timeouts_total{side=\"upstream\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lane_router_body_timeouts_total{side=\"client\"} 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_that_stalls_its_body_has_the_h2c_stream_reset() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (r, stalled, slow, upstream_saw) = upstream_body_stall_router().await;
    r.table.set_protocols([
        (stalled, lane_router::Protocol::Http),
        (slow, lane_router::Protocol::Http),
    ]);
    let stream = TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<bytes::Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let port = r.addr.port();
    // A slow body, each part within the timeout, comes whole.
    let req = http::Request::get(format!("http://c.demo.localhost:{port}/"))
        .body(Full::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"abcdef");
    // A stalled one: the stream is reset after what came, not ended as if whole.
    let req = http::Request::get(format!("http://{B}:{port}/"))
        .body(Full::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => got.extend_from_slice(frame.data_ref().unwrap()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .expect("the stalled stream ends");
    assert!(ended.is_err(), "the stream is reset, not ended");
    assert_eq!(got, b"hello");
    tokio::time::timeout(Duration::from_secs(10), upstream_saw)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    let metrics = r.router.metrics();
    assert!(
        metrics.contains("lane_router_body_timeouts_total{side=\"upstream\"} 1\n"),
        "{metrics}"
    );
    // The connection serves on.
    let req = http::Request::get(format!("http://c.demo.localhost:{port}/"))
        .body(Full::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"abcdef");
}

#[tokio::test]
async fn an_h2c_first_request_whose_headers_never_end_is_closed_by_the_head_timeout() {
    // hyper's HTTP/2 server has no header read timeout; such a connection has had no stream open,
    // so the head timeout (from the connection's start, as on HTTP/1.x) closes it.
    let (base, _s) = backend("b-base").await;
    let limits = Limits {
        head_timeout: Duration::from_millis(300),
        // Longer than the test: only the head timeout may end this.
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, base)], &[], 1),
    )
    .await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame, then a HEADERS frame on stream 1 without END_HEADERS (`:method GET`
    // and nothing more), and no CONTINUATION.
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 1, 0x1, 0, 0, 0, 0, 1, 0x82]);
    s.write_all(&out).await.unwrap();
    // It does not answer the router's ping either: it is dropped after another such period.
    let got = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the connection is closed");
    // The router's SETTINGS, its ACK of ours, and a GOAWAY (type 7) before the close.
    assert!(got.len() >= 9, "{got:?}");
    let mut frames = Vec::new();
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frames.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(frames.contains(&0x7), "frame types {frames:?}");
}

/// A request body fed from a channel: it stalls when nothing is sent and the sender is kept.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|got| got.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}

#[tokio::test]
async fn an_h2c_client_that_stalls_its_body_gets_408_and_the_upstream_connection_closes() {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (up, upstream_saw) = stalling_upstream("").await;
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let r = router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, up)], &[], 1),
    )
    .await;
    r.table.set_protocols([(up, lane_router::Protocol::Http)]);
    let stream = TcpStream::connect(r.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, ChannelBody>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(bytes::Bytes::from_static(b"hel")).await.unwrap();
    let req = http::Request::post(format!("http://{B}:{}/", r.addr.port()))
        .header("content-length", "10")
        .body(ChannelBody(rx))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(resp.status(), 408);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("LANE_ROUTER_BODY_TIMEOUT"), "{body}");
    let seen = tokio::time::timeout(Duration::from_secs(10), upstream_saw)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&seen).ends_with("\r\n\r\nhel"));
    assert!(
        r.router
            .metrics()
            .contains("lane_router_body_timeouts_total{side=\"client\"} 1\n")
    );
    drop(tx);
}

/// An upstream that takes one request, answers it with `head`, then sends 1 GiB as fast as its
/// peer takes it (the body, or an upgraded stream); reports whether its connection was closed
/// before the whole gigabyte went.
async fn firehose(head: String) -> (SocketAddr, tokio::sync::oneshot::Receiver<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        s.write_all(head.as_bytes()).await.unwrap();
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        let mut cut = false;
        while sent < FIREHOSE_LEN {
            if s.write_all(&block).await.is_err() {
                cut = true;
                break;
            }
            sent += block.len();
        }
        let _ = tx.send(cut);
    });
    (addr, rx)
}

const FIREHOSE_LEN: usize = 1 << 30;

/// A [`firehose`] answering with a 1 GiB response body.
async fn firehose_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<bool>) {
    firehose(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {FIREHOSE_LEN}\r\n\r\n"
    ))
    .await
}

/// A router with a 500 ms send timeout (and the other limits at their defaults, far longer than
/// the tests) in front of `demo.b` at `up`.
async fn send_timeout_router(up: SocketAddr) -> RunningRouter {
    let limits = Limits {
        send_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    router_with(
        config(limits),
        table(vec![ep("demo.b", "baseline", true, up)], &[], 1),
    )
    .await
}

/// Polls the router's metrics until `line` shows (10 s at most).
async fn metric_shows(r: &RunningRouter, line: &str) -> String {
    for _ in 0..200 {
        let metrics = r.router.metrics();
        if metrics.contains(line) {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("`{line}` not in the metrics: {}", r.router.metrics());
}

#[tokio::test]
async fn a_client_that_stops_reading_has_its_connection_reset_and_the_upstream_closed() {
    let (up, upstream_cut) = firehose_upstream().await;
    let r = send_timeout_router(up).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The client reads nothing: the socket buffers fill, the router's write waits, and after the
    // send timeout the router gives up on this client.
    metric_shows(&r, "lane_router_send_timeouts_total{side=\"client\"} 1\n").await;
    assert!(
        r.router
            .metrics()
            .contains("lane_router_send_timeouts_total{side=\"upstream\"} 0\n")
    );
    // The upstream's connection is closed under it, long before its gigabyte is sent.
    let cut = tokio::time::timeout(Duration::from_secs(10), upstream_cut)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(cut, "the upstream sent its whole body");
    // What the client finally reads is a head and part of the body, then a reset or an end: not
    // a gigabyte.
    let mut got = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stays open");
    assert!(got > 0 && got < 1 << 30, "read {got} bytes");
}

/// An upstream that reads request heads only, never their bodies, and never answers.
async fn head_only_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                // Hold the connection, reading nothing more.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(s);
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_stops_reading_the_request_gets_a_504_naming_the_send_timeout() {
    let up = head_only_upstream().await;
    let r = send_timeout_router(up).await;
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    const LEN: usize = 1 << 30;
    let writer = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: {LEN}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.unwrap();
        let block = vec![b'y'; 64 * 1024];
        let mut sent = 0;
        while sent < LEN && wr.write_all(&block).await.is_ok() {
            sent += block.len();
        }
        sent
    });
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(15), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"\n") {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("an answer within 15 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
    assert!(text.contains("LANE_ROUTER_SEND_TIMEOUT"), "{text}");
    assert!(text.contains(&up.to_string()), "names the instance: {text}");
    assert!(text.contains("connection: close"), "{text}");
    metric_shows(&r, "lane_router_send_timeouts_total{side=\"upstream\"} 1\n").await;
    // The client's upload stops (the router closes), far short of the gigabyte.
    let sent = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the client's upload ends")
        .unwrap();
    assert!(sent < LEN, "sent {sent}");
}

/// A [`firehose`] accepting an upgrade (`101`), then streaming.
async fn upgrade_firehose_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<bool>) {
    firehose(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-firehose\r\n\r\n"
            .to_owned(),
    )
    .await
}

#[tokio::test]
async fn an_upgraded_connection_whose_client_stops_reading_is_closed_after_the_send_timeout() {
    let (up, upstream_cut) = upgrade_firehose_upstream().await;
    let r = send_timeout_router(up).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {B}\r\nConnection: upgrade\r\nUpgrade: x-firehose\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Read the 101 and a little of the stream, then stop reading.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < 8192 {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&got[..64])
    );
    metric_shows(&r, "lane_router_send_timeouts_total{side=\"client\"} 1\n").await;
    let cut = tokio::time::timeout(Duration::from_secs(10), upstream_cut)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(cut, "the upstream sent its whole gigabyte");
}

#[tokio::test]
async fn an_h2c_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let (up, upstream_cut) = firehose_upstream().await;
    let r = send_timeout_router(up).await;
    r.table.set_protocols([(up, lane_router::Protocol::Http)]);
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: the largest initial stream window (id 4), then the connection window opened as
    // far as it goes, so that only the socket can hold the router back.
    out.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4, 0x7f, 0xff, 0xff, 0xff]);
    out.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0x00, 0x00]);
    // HEADERS on stream 1, END_STREAM | END_HEADERS: GET http / and :authority (a literal).
    let mut block = vec![0x82, 0x86, 0x84, 0x41, B.len() as u8];
    block.extend_from_slice(B.as_bytes());
    out.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    s.write_all(&out).await.unwrap();
    // Then it reads nothing more: the socket fills, and the send timeout closes the connection.
    metric_shows(&r, "lane_router_send_timeouts_total{side=\"client\"} 1\n").await;
    let cut = tokio::time::timeout(Duration::from_secs(10), upstream_cut)
        .await
        .expect("the upstream connection is closed")
        .unwrap();
    assert!(cut, "the upstream sent its whole gigabyte");
}
