//! The router's HTTP/1.x side at the byte level: raw requests on real sockets (pipelining,
//! HTTP/1.0, chunked bodies, `Expect: 100-continue`, upgrades, malformed input) and scripted
//! upstreams that misbehave (close kept connections, answer garbage, delimit by closing).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const B: &str = "b.demo.localhost";

/// A parsed response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `s` (`buf` keeps what was read past it). Bodies: Content-Length,
/// chunked (decoded), or until EOF.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Raw {
    let (status, headers, len) = loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(len) = resp.parse(buf).expect("a valid response head") {
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (resp.code.unwrap(), headers, len);
        }
        read_more(s, buf).await;
    };
    buf.drain(..len);
    let mut raw = Raw {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return raw;
    }
    if let Some(n) = raw.header("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            read_more(s, buf).await;
        }
        raw.body = buf.drain(..n).collect();
    } else if raw
        .headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .is_some_and(|(_, te)| te.ends_with("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                read_more(s, buf).await;
            };
            let line = String::from_utf8(buf[..line_end].to_vec()).unwrap();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            buf.drain(..line_end + 2);
            if size == 0 {
                while !buf.windows(2).any(|w| w == b"\r\n") {
                    read_more(s, buf).await;
                }
                // No trailers in these tests: the final CRLF.
                buf.drain(..2);
                break;
            }
            while buf.len() < size + 2 {
                read_more(s, buf).await;
            }
            raw.body.extend(buf.drain(..size));
            buf.drain(..2);
        }
    } else {
        loop {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("a close-delimited body ends within 5 s")
                .unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        raw.body = std::mem::take(buf);
    }
    raw
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
        .await
        .expect("the router answers within 5 s")
        .unwrap();
    assert!(
        n > 0,
        "connection closed early; had {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// A connection to `addr` on which `raw` has been sent.
async fn open(addr: SocketAddr, raw: impl AsRef<[u8]>) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    write(&mut s, raw).await;
    s
}

/// Writes all of `raw` to `s`.
async fn write(s: &mut TcpStream, raw: impl AsRef<[u8]>) {
    s.write_all(raw.as_ref()).await.unwrap();
}

/// Whether the peer closes `s` (within 5 s) with nothing more to read.
async fn closes(s: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A router whose `demo.b` baseline is `base` (and lane `feature-x` is `lane`, if given).
async fn router_to(base: SocketAddr) -> RunningRouter {
    router(table(vec![ep("demo.b", "baseline", true, base)], &[], 1)).await
}

/// An upstream that runs `script` on every connection it accepts.
async fn scripted<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    addr
}

/// Reads one request head (and nothing more) off `s`.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    let mut s = open(
        r.addr,
        format!(
            "GET /slow?ms=150 HTTP/1.1\r\nHost: {B}\r\n\r\n\
             POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 3\r\n\r\nabc\
             GET / HTTP/1.1\r\nhost: {B}\r\nconnection: close\r\n\r\n"
        ),
    )
    .await;
    let mut buf = Vec::new();
    let first = read_response(&mut s, &mut buf, false).await;
    let second = read_response(&mut s, &mut buf, false).await;
    let third = read_response(&mut s, &mut buf, false).await;
    assert_eq!(first.text(), "b-base");
    assert_eq!(second.text(), "b-base got abc");
    assert_eq!(third.text(), "b-base");
    assert_eq!(third.header("connection"), Some("close"));
    assert_eq!(first.header("x-lane-served-by"), Some("demo.b@baseline"));
    assert!(closes(&mut s).await);
}

#[tokio::test]
async fn http_1_0_clients_get_keep_alive_only_when_they_ask() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;

    let mut s = open(r.addr, format!("GET / HTTP/1.0\r\nHost: {B}\r\n\r\n")).await;
    let mut buf = Vec::new();
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "b-base"));
    assert_eq!(got.header("connection"), Some("close"));
    assert!(closes(&mut s).await);

    let mut s = TcpStream::connect(r.addr).await.unwrap();
    for _ in 0..2 {
        write(
            &mut s,
            format!("GET / HTTP/1.0\r\nHost: {B}\r\nConnection: keep-alive\r\n\r\n"),
        )
        .await;
        let got = read_response(&mut s, &mut buf, false).await;
        assert_eq!(got.text(), "b-base");
        assert_eq!(got.header("connection"), Some("keep-alive"));
    }
}

#[tokio::test]
async fn chunked_bodies_pass_through_both_ways() {
    // Upstream echoes the request's (chunked) body back chunked, with a trailer, after checking
    // what the router sent it.
    let up = scripted(|mut s| async move {
        let head = read_head(&mut s).await.to_ascii_lowercase();
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        let mut body = Vec::new();
        while !body.ends_with(b"0\r\n\r\n") {
            let mut chunk = [0u8; 256];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body.extend_from_slice(&chunk[..n]);
        }
        let mut resp =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n".to_vec();
        resp.extend_from_slice(&body[..body.len() - 2]);
        resp.extend_from_slice(b"x-sum: 7\r\n\r\n");
        s.write_all(&resp).await.unwrap();
    })
    .await;
    let r = router_to(up).await;
    let mut s = open(
        r.addr,
        format!(
            "POST /echo HTTP/1.1\r\nHost: {B}\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n4;note=x\r\ndefg\r\n0\r\n\r\n"
        ),
    )
    .await;
    // The raw bytes: the chunking and the trailer arrive as upstream sent them.
    let mut raw = Vec::new();
    while !raw.ends_with(b"x-sum: 7\r\n\r\n") {
        read_more(&mut s, &mut raw).await;
    }
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert_eq!(text.matches("ransfer-Encoding").count(), 1, "{text}");
    assert!(
        text.ends_with("\r\n\r\n3\r\nabc\r\n4;note=x\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chunked_response_to_an_http_1_0_client_is_decoded() {
    let up = scripted(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    })
    .await;
    let r = router_to(up).await;
    let mut s = open(r.addr, format!("GET / HTTP/1.0\r\nHost: {B}\r\n\r\n")).await;
    let got = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!(got.header("transfer-encoding"), None);
    assert_eq!(got.header("connection"), Some("close"));
    assert_eq!(got.text(), "hello");
}

#[tokio::test]
async fn expect_100_continue_is_relayed() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    let mut s = open(
        r.addr,
        format!("PUT / HTTP/1.1\r\nHost: {B}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
    )
    .await;
    // The client holds its body until the interim response arrives.
    let mut buf = Vec::new();
    let interim = read_response(&mut s, &mut buf, false).await;
    assert_eq!(interim.status, 100);
    write(&mut s, b"hello").await;
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "b-base got hello"));
}

#[tokio::test]
async fn upgrades_are_tunnelled_after_101() {
    let up = scripted(|mut s| async move {
        let head = read_head(&mut s).await.to_ascii_lowercase();
        assert!(head.contains("connection: upgrade\r\n"), "{head}");
        assert!(head.contains("upgrade: echo\r\n"), "{head}");
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let mut chunk = [0u8; 256];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 || s.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
    })
    .await;
    let r = router_to(up).await;
    let mut s = open(
        r.addr,
        format!("GET /ws HTTP/1.1\r\nHost: {B}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"),
    )
    .await;
    let mut buf = Vec::new();
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!(got.status, 101);
    assert_eq!(got.header("upgrade"), Some("echo"));
    assert_eq!(got.header("x-lane-served-by"), Some("demo.b@baseline"));
    for word in ["ping", "pong, both ways"] {
        s.write_all(word.as_bytes()).await.unwrap();
        buf.clear();
        while buf.len() < word.len() {
            read_more(&mut s, &mut buf).await;
        }
        assert_eq!(buf, word.as_bytes());
    }
}

#[tokio::test]
async fn malformed_requests_get_a_clear_400_and_the_connection_closes() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    for (raw, status, says) in [
        ("GARBAGE\r\n\r\n".to_owned(), 400, "not valid HTTP/1.1"),
        (
            format!(
                "POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: x\r\n\r\n"),
            400,
            "Content-Length is not a number",
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
            ),
            400,
            "conflicting Content-Length headers",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {B}\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400,
            "does not end in `chunked`",
        ),
        (
            format!("GET nowhere HTTP/1.1\r\nHost: {B}\r\n\r\n"),
            400,
            "neither a path nor an absolute URI",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: {B}\r\nHost: other\r\n\r\n"),
            400,
            "more than one Host",
        ),
        (
            format!("POST / HTTP/1.1\r\nHost: {B}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            400,
            "malformed chunked",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {B}\r\nx-big: {}\r\n\r\n",
                "a".repeat(70_000)
            ),
            431,
            "larger than 64 KiB",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {B}\r\n{}\r\n",
                "x-h: 1\r\n".repeat(200)
            ),
            431,
            "more than 128 header fields",
        ),
        (
            "CONNECT b.demo.localhost:443 HTTP/1.1\r\nHost: b.demo.localhost:443\r\n\r\n"
                .to_owned(),
            405,
            "CONNECT is not supported",
        ),
    ] {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let got = read_response(&mut s, &mut Vec::new(), false).await;
        assert_eq!(got.status, status, "{}", got.text());
        assert!(got.text().contains(says), "{}", got.text());
        assert_eq!(got.header("connection"), Some("close"));
        assert!(closes(&mut s).await);
    }
    // The router goes on serving.
    let got = get(&client(), r.addr, B, "/", &[]).await;
    assert_eq!(got.body, "b-base");
}

#[tokio::test]
async fn a_kept_upstream_connection_closed_by_upstream_is_replaced() {
    // Answers one request per connection, keep-alive by its headers, then closes.
    let up = scripted(|mut s| async move {
        read_head(&mut s).await;
        write(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    })
    .await;
    let r = router_to(up).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..5 {
        if i > 0 {
            // Let upstream's close arrive before the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        write(&mut s, format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
        let got = read_response(&mut s, &mut buf, false).await;
        assert_eq!(
            (got.status, got.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
    // Without the pause, the close may race the next request: a GET is then sent again on a new
    // connection.
    for i in 0..20 {
        write(&mut s, format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
        let got = read_response(&mut s, &mut buf, false).await;
        assert_eq!(
            (got.status, got.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
}

#[tokio::test]
async fn broken_upstream_responses_are_502s_that_say_why() {
    let garbage = scripted(|mut s| async move {
        read_head(&mut s).await;
        write(&mut s, b"this is not http\r\n\r\n").await;
    })
    .await;
    let silent = scripted(|mut s| async move {
        read_head(&mut s).await;
    })
    .await;
    let short = scripted(|mut s| async move {
        read_head(&mut s).await;
        write(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
    })
    .await;
    // One scripted upstream per broken answer.
    async fn answering(raw: &'static [u8]) -> SocketAddr {
        scripted(move |mut s| async move {
            read_head(&mut s).await;
            write(&mut s, raw).await;
        })
        .await
    }
    let unasked = answering(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n").await;
    let lengths =
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok").await;
    let chunks = answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
    for (up, says) in [
        (garbage, "not valid HTTP/1.1"),
        (silent, "closed the connection without answering"),
        (unasked, "switched protocols unasked"),
        (lengths, "conflicting Content-Length headers"),
        (chunks, "its chunked body is malformed"),
    ] {
        let r = router_to(up).await;
        let got = get(&client(), r.addr, B, "/", &[]).await;
        assert_eq!(got.status, 502);
        assert!(got.body.contains(says), "{}", got.body);
        assert!(got.body.contains(&up.to_string()), "{}", got.body);
        assert_eq!(got.served_by(), "demo.b@baseline");
    }
    // A body cut short after its head went out: the client sees a reset, never a clean end that
    // could pass for the whole body (which matters most for bodies delimited by closing).
    let cut = scripted(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\npart of it")
            .await
            .unwrap();
        // Reset, not close: the body's end is unknown.
        let _ = s.set_zero_linger();
    })
    .await;
    for up in [short, cut] {
        let r = router_to(up).await;
        let mut s = open(r.addr, format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
        let mut all = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
                Ok(Ok(0)) => break "clean close",
                Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
                Ok(Err(_)) => break "reset",
                Err(_) => break "timeout",
            }
        };
        let text = String::from_utf8_lossy(&all);
        assert_eq!(end, "reset", "{text}");
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 200 OK\r\n"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_response_delimited_by_close_reaches_the_client_whole() {
    let up = scripted(|mut s| async move {
        read_head(&mut s).await;
        write(
            &mut s,
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        )
        .await;
    })
    .await;
    let r = router_to(up).await;
    let mut s = open(r.addr, format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
    let got = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!(got.text(), "until the end");
    assert_eq!(got.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_client_gone_mid_body_does_not_disturb_others() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    let s = open(
        r.addr,
        format!("POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 1000\r\n\r\nonly"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    let got = get(&client(), r.addr, B, "/", &[]).await;
    assert_eq!(got.body, "b-base");
    let got = get(&client(), r.addr, "localhost", "/metrics", &[]).await;
    assert!(got.body.contains("lane_router_up 1"));
}

#[tokio::test]
async fn head_requests_and_admin_over_raw_http() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut buf = Vec::new();
    write(&mut s, format!("HEAD / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
    let got = read_response(&mut s, &mut buf, true).await;
    assert_eq!((got.status, got.header("content-length")), (200, Some("6")));
    // Absolute form, as a forward proxy would send it; the body must not have been sent above.
    write(
        &mut s,
        format!("GET http://{B}/ HTTP/1.1\r\nHost: ignored\r\n\r\n"),
    )
    .await;
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!(got.text(), "b-base");
    write(
        &mut s,
        b"GET /healthz?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_idle_connections() {
    let (base, _s) = backend("b-base").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = lane_router::Router::new(
        lane_router::RouterConfig::default(),
        lane_router::TableHandle::new(table(vec![ep("demo.b", "baseline", true, base)], &[], 1)),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(router.serve(listener, async {
        let _ = rx.await;
    }));

    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    write(&mut idle, format!("GET / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
    read_response(&mut idle, &mut buf, false).await;
    write(
        &mut busy,
        format!("GET /slow?ms=400 HTTP/1.1\r\nHost: {B}\r\n\r\n"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(()).unwrap();

    assert!(closes(&mut idle).await, "the idle connection is closed");
    let got = read_response(&mut busy, &mut Vec::new(), false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "b-base"));
    assert_eq!(got.header("connection"), Some("close"));
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returns once connections are done")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn an_upstream_that_answers_while_the_body_streams_gets_the_rest_of_it() {
    // A streaming echo: it sends its head at once, then each piece of the body as it arrives.
    let up = scripted(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0;
        let mut chunk = [0u8; 64];
        while got < 10 {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            s.write_all(&chunk[..n]).await.unwrap();
            got += n;
        }
    })
    .await;
    let r = router_to(up).await;
    let mut s = open(
        r.addr,
        format!("POST / HTTP/1.1\r\nHost: {B}\r\nContent-Length: 10\r\n\r\nfirst"),
    )
    .await;
    // The head and the first half come back before the client sends the second half.
    let mut raw = Vec::new();
    while !raw.ends_with(b"first") {
        read_more(&mut s, &mut raw).await;
    }
    write(&mut s, b"-last").await;
    while !raw.ends_with(b"first-last") {
        read_more(&mut s, &mut raw).await;
    }
    // The response went out before the request was all read, so it said it would close, and did.
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(closes(&mut s).await);
}

#[tokio::test]
async fn framing_headers_are_made_canonical() {
    // Upstream names Content-Length in Connection (so it is hop-by-hop to a naive proxy), repeats
    // it, and splits its transfer codings over two lines.
    let odd = scripted(|mut s| async move {
        loop {
            let head = read_head(&mut s).await;
            if head.is_empty() {
                return;
            }
            let resp: &[u8] = if head.starts_with("GET /length") {
                b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
            } else {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            };
            s.write_all(resp).await.unwrap();
        }
    })
    .await;
    let r = router_to(odd).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        write(&mut s, format!("GET /length HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
        let got = read_response(&mut s, &mut buf, false).await;
        assert_eq!(got.text(), "hello");
        let lengths: Vec<_> = got
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(lengths, ["5"]);
        write(
            &mut s,
            format!("GET /codings HTTP/1.1\r\nHost: {B}\r\n\r\n"),
        )
        .await;
        let got = read_response(&mut s, &mut buf, false).await;
        assert_eq!(got.text(), "ok");
    }
}

#[tokio::test]
async fn a_502_to_head_has_no_body() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let r = router_to(dead).await;
    let mut s = open(r.addr, format!("HEAD / HTTP/1.1\r\nHost: {B}\r\n\r\n")).await;
    let mut buf = Vec::new();
    let got = read_response(&mut s, &mut buf, true).await;
    assert_eq!(got.status, 502);
    // The next response on the connection starts right where the head ended.
    write(&mut s, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let got = read_response(&mut s, &mut buf, false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn bare_lf_in_a_chunked_trailer_is_refused() {
    let (base, _s) = backend("b-base").await;
    let r = router_to(base).await;
    let mut s = open(
        r.addr,
        format!(
            "POST / HTTP/1.1\r\nHost: {B}\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        ),
    )
    .await;
    let got = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!(got.status, 400, "{}", got.text());
    assert!(got.text().contains("malformed chunked"), "{}", got.text());
}

/// RFC 9112 §3.2 and §7.1, RFC 3986: requests whose framing or target the router cannot trust are
/// refused with a 400 that says why, and the connection closes; none reaches a service.
#[tokio::test]
async fn strict_framing_and_targets_get_a_400_and_the_connection_closes() {
    let (base, _s) = backend("b-base").await;
    let (other, _o) = backend("c-base").await;
    let r = router(table(
        vec![
            ep("demo.b", "baseline", true, base),
            ep("demo.c", "baseline", true, other),
        ],
        &[],
        1,
    ))
    .await;
    let chunked = |body: &str| {
        format!("POST / HTTP/1.1\r\nHost: {B}\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
    };
    for (raw, says) in [
        (
            chunked("5 junk\r\nhello\r\n0\r\n\r\n"),
            "invalid chunk extension",
        ),
        (
            chunked("5;a\x00b\r\nhello\r\n0\r\n\r\n"),
            "invalid chunk extension",
        ),
        (
            chunked("5;a=\x07\r\nhello\r\n0\r\n\r\n"),
            "invalid chunk extension",
        ),
        (
            chunked("0\r\nGET /smuggled HTTP/1.1\r\nHost: c.demo.localhost\r\n\r\n"),
            "invalid trailer field",
        ),
        (
            chunked("0\r\nx-t: a\x01b\r\n\r\n"),
            "invalid trailer field value",
        ),
        (
            "GET / HTTP/1.1\r\nx-lane: a\r\n\r\n".to_owned(),
            "no Host header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: b.demo.localhost@evil\r\n\r\n".to_owned(),
            "is not a valid `host[:port]`",
        ),
        (
            "GET / HTTP/1.1\r\nHost: b.demo.localhost, c.demo.localhost\r\n\r\n".to_owned(),
            "is not a valid `host[:port]`",
        ),
        (
            format!("GET http://b.demo.localhost#@c.demo.localhost/ HTTP/1.1\r\nHost: {B}\r\n\r\n"),
            "holds a fragment",
        ),
        (
            format!("GET /a#b HTTP/1.1\r\nHost: {B}\r\n\r\n"),
            "holds a fragment",
        ),
        (
            format!("GET http://x@y@c.demo.localhost/ HTTP/1.1\r\nHost: {B}\r\n\r\n"),
            "not a valid `[userinfo@]host[:port]`",
        ),
    ] {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let got = read_response(&mut s, &mut Vec::new(), false).await;
        assert_eq!(got.status, 400, "{raw:?}: {}", got.text());
        assert!(got.text().contains(says), "{raw:?}: {}", got.text());
        assert_eq!(got.header("connection"), Some("close"));
        assert_eq!(got.header("x-lane-served-by"), None, "{raw:?}");
        assert!(closes(&mut s).await);
    }
    // Bad bodies are found while they stream (their requests were routed to `demo.b`); nothing
    // ever reached `demo.c`, which the smuggled request and the fragment named.
    assert!(
        r.router
            .traffic()
            .iter()
            .all(|t| t.service.as_str() == "demo.b"),
        "{:?}",
        r.router.traffic()
    );
    // HTTP/1.0 needs no Host (it goes to the router's own endpoints); valid extensions and
    // trailers still pass.
    let mut s = open(r.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    let got = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "ok\n"));
    let mut s = open(
        r.addr,
        chunked("5 ; a = \"q\\\"\" ;b\r\nhello\r\n0\r\nx-t: 1\r\n\r\n"),
    )
    .await;
    let got = read_response(&mut s, &mut Vec::new(), false).await;
    assert_eq!((got.status, got.text().as_str()), (200, "b-base got hello"));
}
