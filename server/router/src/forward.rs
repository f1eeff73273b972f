//! What the router and the lane proxy share: the response body type, the upstream clients and the
//! header surgery a proxy must do (hop-by-hop headers).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The body of every response the router sends (streamed from upstream, or a small one it made),
/// and of every request it forwards through hyper.
pub(crate) enum RouterBody {
    Upstream(Incoming),
    /// Streamed from upstream, held to a body timeout between two frames.
    Timed(Box<Timed>),
    Full(Option<Bytes>),
}

/// A relayed body that fails (so that the stream it feeds is reset, not ended as if whole) when its
/// sender sends nothing for `timeout` while the router waits for it; `on_stall` runs then.
pub(crate) struct Timed {
    body: Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    on_stall: Option<Box<dyn FnOnce() -> String + Send>>,
}

impl Timed {
    pub(crate) fn new(
        body: Incoming,
        timeout: Duration,
        on_stall: impl FnOnce() -> String + Send + 'static,
    ) -> Self {
        Timed {
            body,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
            on_stall: Some(Box::new(on_stall)),
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(got) = Pin::new(&mut self.body).poll_frame(cx) {
            self.waiting = false;
            return Poll::Ready(got.map(|r| r.map_err(Into::into)));
        }
        // The time runs from when the router starts waiting for upstream, not while the client is
        // slow to take what came.
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.sleep.as_mut().reset(deadline);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let why = self.on_stall.take().map(|f| f()).unwrap_or_default();
        Poll::Ready(Some(Err(why.into())))
    }
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl RouterBody {
    pub(crate) fn text(text: impl Into<Bytes>) -> Self {
        RouterBody::Full(Some(text.into()))
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RouterBody::Upstream(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|got| got.map(|r| r.map_err(Into::into))),
            RouterBody::Timed(timed) => timed.poll_frame(cx),
            RouterBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RouterBody::Upstream(body) => body.is_end_stream(),
            RouterBody::Timed(timed) => timed.body.is_end_stream(),
            RouterBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RouterBody::Upstream(body) => body.size_hint(),
            RouterBody::Timed(timed) => timed.body.size_hint(),
            RouterBody::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            RouterBody::Full(None) => SizeHint::with_exact(0),
        }
    }
}

/// A pooled upstream client; request bodies are [`RouterBody`]s too (a client's, maybe timed).
pub(crate) type Upstream<R> = Client<HttpConnector<R>, RouterBody>;

/// The two pooled upstream clients: HTTP/1.1 keep-alive and HTTP/2 prior knowledge (h2c).
#[derive(Clone)]
pub(crate) struct Clients<R = GaiResolver> {
    pub(crate) h1: Upstream<R>,
    pub(crate) h2: Upstream<R>,
}

impl<R> Clients<R>
where
    R: tower_service::Service<Name> + Clone + Send + Sync + 'static,
    R::Response: Iterator<Item = std::net::SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    pub(crate) fn new(resolver: R, connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new_with_resolver(resolver);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let h1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_max_buf_size(256 * 1024)
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(true)
            .http2_adaptive_window(true)
            .build(connector);
        Clients { h1, h2 }
    }

    pub(crate) fn for_version(&self, version: http::Version) -> &Upstream<R> {
        if version == http::Version::HTTP_2 {
            &self.h2
        } else {
            &self.h1
        }
    }
}

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1); both the
/// h2c side ([`strip_hop_by_hop`]) and the HTTP/1.x loop use this list. `te` is handled apart:
/// `te: trailers` is forwarded.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, and the headers the `Connection` header names. `te: trailers` is kept
/// (gRPC needs it end to end); any other `te` is dropped.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.is_empty() {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if name != header::TE {
                headers.remove(name);
            }
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(te) = headers.get(header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// A plain-text response made by the router itself.
pub(crate) fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<RouterBody> {
    let mut resp = Response::new(RouterBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `err` and its sources, joined with `: `.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// A header value made from free text: non-printable and non-ASCII characters become `?`.
pub(crate) fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// Runs an accept loop until `shutdown` resolves, serving each connection with a service from
/// `make_service` (one per connection, so it may hold per-connection state), then waits (bounded) for
/// open connections to finish their in-flight requests.
pub(crate) async fn accept_loop<S>(
    listener: tokio::net::TcpListener,
    mut make_service: impl FnMut() -> S,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = Response<RouterBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No HTTP/1 header-read timer: hyper arms a fresh 30 s sleep for every request, and inserting
    // the earliest timer wakes the runtime's driver (an eventfd write and an extra epoll round per
    // request, measured with the benchmark). Clients of a dev router are trusted.
    builder
        .http1()
        .header_read_timeout(None)
        .keep_alive(true)
        .writev(true)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .adaptive_window(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // EMFILE, ECONNABORTED…: the listener is fine; back off a little.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder
                    .serve_connection(TokioIo::new(stream), make_service())
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open 10 s after shutdown; leaving them");
        }
    }
    Ok(())
}

/// A stream with bytes already read from it put back in front (the bytes read to tell h2c from
/// HTTP/1.x), for connections served through hyper. It also holds writes to the send timeout
/// ([`crate::Limits::send_timeout`]): once a write has waited that long for the socket to take a
/// byte (the peer stopped reading), it fails with [`std::io::ErrorKind::TimedOut`] and
/// [`Prefixed::stalled`] turns true. hyper's own keep-alive ping cannot do this: the GOAWAY it
/// sends on a ping timeout waits behind the same full socket.
pub(crate) struct Prefixed {
    prefix: Bytes,
    stream: tokio::net::TcpStream,
    send_timeout: Duration,
    /// The deadline of the write waiting now, if one is (set up on the first wait only).
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    stalled: Arc<std::sync::atomic::AtomicBool>,
}

impl Prefixed {
    pub(crate) fn new(
        prefix: Bytes,
        stream: tokio::net::TcpStream,
        send_timeout: Duration,
    ) -> Self {
        Prefixed {
            prefix,
            stream,
            send_timeout,
            waiting: None,
            armed: false,
            stalled: Arc::default(),
        }
    }

    /// Turns true when a write failed for the send timeout.
    pub(crate) fn stalled(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stalled.clone()
    }

    /// What a write that returned `got` comes to: a wait past the send timeout is an error.
    fn hold<T>(
        &mut self,
        cx: &mut Context<'_>,
        got: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if got.is_ready() {
            self.armed = false;
            return got;
        }
        let deadline = tokio::time::Instant::now() + self.send_timeout;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            self.armed = true;
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            self.stalled
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the peer took no byte for {:?} (LANE_ROUTER_SEND_TIMEOUT)",
                    self.send_timeout
                ),
            )));
        }
        Poll::Pending
    }
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let got = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.hold(cx, got)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let got = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.hold(cx, got)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-lane", "a".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["te", "x-lane"]);
        h.insert(header::TE, "gzip".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::TE));
    }

    #[test]
    fn header_text_is_always_valid() {
        assert_eq!(header_text("a `b` é\n"), "a `b` ??");
    }
}
