//! The router's HTTP/1.x side: a small proxy loop written for this one job instead of a general
//! HTTP server and client.
//!
//! A downstream connection is served by one task that parses each request head in place
//! (`httparse`), routes it, writes the rewritten head to an upstream connection it keeps for that
//! target, and relays the response with the bytes it already holds. Bodies are streamed, never
//! collected: `Content-Length` bodies are copied by count, chunked bodies are passed through as they
//! are (their framing is checked, not rebuilt), and a response delimited by closing the connection
//! is relayed until upstream closes. Requests and responses keep their order on a connection
//! (pipelined requests wait their turn). `Connection: upgrade` requests (WebSocket) are tunnelled
//! once upstream answers `101`.
//!
//! Per request this costs one read of the request, one write and one read upstream, and one write
//! of the response: the same system calls nginx makes. The pooled hyper client is not used here;
//! each downstream connection owns its upstream connections (one per target, up to
//! [`MAX_KEPT`]), so a request never waits on a pool lock or a spawned task.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use httparse::{EMPTY_HEADER, Header, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::forward::HOP_BY_HOP;
use crate::{FORWARDED_FOR, FORWARDED_PROTO, INVALID, Inner, Outcome, SERVED_BY};

/// The longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields accepted in one head.
const MAX_HEADERS: usize = 128;
/// How much buffer space each read asks for.
const READ_CHUNK: usize = 16 * 1024;
/// Upstream connections one downstream connection keeps (one per target, oldest dropped first).
const MAX_KEPT: usize = 4;
/// How many instances that refused the connection one request is sent on from, at most.
const MAX_RETRIES: usize = 8;

/// A connection's one timer, for every deadline it has in turn (the request head, the idle
/// keep-alive wait, the upstream's response head). Moving the deadline later costs no system
/// call and no timer-wheel work: the timer keeps its old expiry, and when it fires early it is
/// re-armed for the real deadline. Only moving it earlier re-arms it at once. (A fresh timer per
/// request would cost a driver wake-up per request, measured with the benchmark.)
pub(crate) struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
}

impl Watchdog {
    pub(crate) fn new(deadline: tokio::time::Instant) -> Self {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            deadline,
        }
    }

    /// Sets the deadline `after` from now.
    fn set(&mut self, after: Duration) {
        self.deadline = tokio::time::Instant::now() + after;
        if self.deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(self.deadline);
        }
    }

    /// Resolves once the deadline has passed.
    pub(crate) async fn expired(&mut self) {
        loop {
            (&mut self.sleep).await;
            if tokio::time::Instant::now() >= self.deadline {
                return;
            }
            let deadline = self.deadline;
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// Serves HTTP/1.x requests on `down` until the client closes, an error ends the connection, or
/// `stop` turns true while the connection is idle. `rbuf` holds bytes already read from `down`.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    down: TcpStream,
    rbuf: BytesMut,
    stop: watch::Receiver<bool>,
    watchdog: Watchdog,
) {
    // For `x-forwarded-for`: the client's address, without port (IPv6 without brackets).
    let client_ip = down
        .peer_addr()
        .map(|a| a.ip().to_string().into_bytes())
        .unwrap_or_default();
    let mut conn = Conn {
        inner,
        stop,
        client_ip,
        down,
        rbuf,
        v11: true,
        head: Vec::with_capacity(1024),
        rhead: Vec::with_capacity(1024),
        wbuf: Vec::with_capacity(1024),
        scratch: Vec::new(),
        kept: Vec::new(),
        watchdog,
        head_started: true,
    };
    loop {
        let len = match conn.next_head().await {
            Ok(Some(len)) => len,
            Ok(None) => return,
            Err(HeadError::TooLarge) => {
                let why = format!("the request head is larger than {} KiB", MAX_HEAD / 1024);
                conn.reply_and_close(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &why)
                    .await;
                return linger(&mut conn.down).await;
            }
            Err(HeadError::TimedOut) => {
                let why = format!(
                    "the request head did not arrive within {:?} (LANE_ROUTER_HEAD_TIMEOUT)",
                    conn.inner.config.limits.head_timeout
                );
                conn.reply_and_close(StatusCode::REQUEST_TIMEOUT, &why)
                    .await;
                return linger(&mut conn.down).await;
            }
            Err(HeadError::Io) => return,
        };
        // The head moves to its own buffer (reused), so the read buffer keeps its allocation.
        let mut head = std::mem::take(&mut conn.head);
        head.clear();
        head.extend_from_slice(&conn.rbuf[..len]);
        conn.rbuf.advance(len);
        let next = conn.exchange(&head).await;
        conn.head = head;
        // Between requests: the idle timeout, until the next head starts.
        conn.watchdog.set(conn.inner.config.limits.idle_timeout);
        conn.head_started = false;
        match next {
            Next::KeepAlive if !conn.stopping() => {}
            Next::Abort => {
                let _ = conn.down.set_zero_linger();
                return;
            }
            Next::Handoff => {
                let mut prefix = BytesMut::with_capacity(conn.head.len() + conn.rbuf.len());
                prefix.extend_from_slice(&conn.head);
                prefix.extend_from_slice(&conn.rbuf);
                return crate::serve_h1_via_hyper(
                    conn.inner,
                    conn.down,
                    prefix.freeze(),
                    conn.stop,
                )
                .await;
            }
            _ => return linger(&mut conn.down).await,
        }
    }
}

/// How long, and for how many bytes, a closing connection keeps reading what the client still
/// sends.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Closes `down` gently: ends the write side (the response goes out and the client sees EOF), then
/// reads and discards what the client still sends, for a little while. Closing a socket with
/// unread data makes the kernel reset the connection, which can destroy the response just written
/// (a 400 or 413 sent while the client was still sending).
async fn linger(down: &mut TcpStream) {
    if down.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match tokio::time::timeout_at(deadline, down.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// One downstream connection.
struct Conn {
    inner: Arc<Inner>,
    /// The client's IP address, as text.
    client_ip: Vec<u8>,
    /// Turns true when the router shuts down: finish the request in hand, then close.
    stop: watch::Receiver<bool>,
    down: TcpStream,
    /// Bytes read from downstream and not yet handled (the next request, or a body's start).
    rbuf: BytesMut,
    /// Whether the request being handled is HTTP/1.1 (else 1.0).
    v11: bool,
    /// The request head being handled.
    head: Vec<u8>,
    /// The response head being handled.
    rhead: Vec<u8>,
    /// The head (and first body bytes) being written.
    wbuf: Vec<u8>,
    /// Body bytes on their way.
    scratch: Vec<u8>,
    /// Upstream connections kept for this downstream connection's next requests.
    kept: Vec<Upstream>,
    /// The deadline of whatever the connection waits for.
    watchdog: Watchdog,
    /// Bytes of the next request head have come (its timeout runs).
    head_started: bool,
}

/// A connection to one upstream instance.
struct Upstream {
    addr: SocketAddr,
    stream: TcpStream,
    buf: BytesMut,
    /// Whether it carried an earlier request (so it may have been closed by upstream meanwhile).
    reused: bool,
}

enum HeadError {
    TooLarge,
    /// Part of a head came, not all of it, within the request-head timeout.
    TimedOut,
    Io,
}

/// What the connection does after a request.
enum Next {
    KeepAlive,
    Close,
    /// Reset the connection: a response was cut short after its head went out, and a clean close
    /// could pass for its end.
    Abort,
    /// The request (still unanswered, in `head`) is for a service that speaks HTTP/2 only
    /// (`protocol = "grpc"`): the connection goes on through hyper, which proxies to h2.
    Handoff,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    Close,
}

/// What a request head says, beyond its start line.
struct ReqInfo<'h> {
    /// The target's authority for an absolute-form request, else the `Host` header.
    host: Option<&'h str>,
    absolute: bool,
    /// The request target in origin form (`*` for `OPTIONS *`); empty means `/`.
    path: &'h str,
    framing: Framing,
    /// The request said its length (`Content-Length`, possibly 0).
    has_length: bool,
    /// The client asked to close after this exchange (HTTP/1.1) or to keep the connection
    /// (HTTP/1.0).
    close: bool,
    keep_alive: bool,
    /// The protocol of a `Connection: upgrade` request.
    upgrade: Option<&'h [u8]>,
}

impl Conn {
    /// Reads until a whole request head is buffered; its length. `None`: the client closed between
    /// requests, or `stop` turned true while the connection was idle.
    async fn next_head(&mut self) -> Result<Option<usize>, HeadError> {
        loop {
            // Tolerate empty lines before a request (RFC 9112 §2.2).
            while self
                .rbuf
                .first()
                .is_some_and(|b| *b == b'\r' || *b == b'\n')
            {
                self.rbuf.advance(1);
            }
            match head_end(&self.rbuf) {
                Some(len) if len <= MAX_HEAD => return Ok(Some(len)),
                Some(_) => return Err(HeadError::TooLarge),
                None if self.rbuf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
                None => {}
            }
            if !self.rbuf.is_empty() && !self.head_started {
                self.head_started = true;
                self.watchdog.set(self.inner.config.limits.head_timeout);
            }
            self.rbuf.reserve(READ_CHUNK);
            let idle = self.rbuf.is_empty();
            let read = tokio::select! {
                read = self.down.read_buf(&mut self.rbuf) => read,
                _ = self.stop.wait_for(|stop| *stop), if idle => return Ok(None),
                () = self.watchdog.expired() => {
                    return if idle { Ok(None) } else { Err(HeadError::TimedOut) };
                }
            };
            match read {
                Ok(0) if self.rbuf.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Err(HeadError::Io),
                Ok(_) => {}
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Handles the request whose head is `head`: routes it and answers it.
    async fn exchange(&mut self, head: &[u8]) -> Next {
        self.v11 = true;
        let mut slots = [const { MaybeUninit::<Header>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let problem = match req.parse_with_uninit_headers(head, &mut slots) {
            Ok(Status::Complete(_)) => None,
            Err(httparse::Error::TooManyHeaders) => Some((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request has more than {MAX_HEADERS} header fields"),
            )),
            Err(e) => Some((
                StatusCode::BAD_REQUEST,
                format!("the request is not valid HTTP/1.1 ({e})"),
            )),
            Ok(Status::Partial) => Some((
                StatusCode::BAD_REQUEST,
                "the request is not valid HTTP/1.1".to_owned(),
            )),
        };
        if let Some((status, why)) = problem {
            self.reply_and_close(status, &why).await;
            return Next::Close;
        }
        let method = req.method.unwrap_or("GET");
        let target = req.path.unwrap_or("/");
        let v11 = req.version == Some(1);
        self.v11 = v11;
        let headers: &[Header] = req.headers;

        if method.eq_ignore_ascii_case("CONNECT") {
            let why = "lane router: CONNECT is not supported; the router is a reverse proxy. \
                       Send requests for `<proc>.<app>.localhost` to it directly.";
            self.reply_and_close(StatusCode::METHOD_NOT_ALLOWED, why)
                .await;
            return Next::Close;
        }
        let info = match request_info(target, v11, headers) {
            Ok(info) => info,
            Err(why) => {
                self.reply_and_close(StatusCode::BAD_REQUEST, &why).await;
                return Next::Close;
            }
        };
        let head_only = method == "HEAD";
        let keep = !self.stopping() && !info.close && (v11 || info.keep_alive);

        let inner = self.inner.clone();
        let lane_header = inner.config.lane_header.as_str();
        let outcome = inner.decide(
            info.host,
            values(headers, lane_header),
            values(headers, "baggage"),
        );
        // Answered here: a request body the router does not read means closing rather than skipping.
        let keep_local = keep && info.framing == Framing::Length(0);
        let (target_addr, served_by, invalid, service, value) = match outcome {
            Outcome::Forward {
                target,
                served_by,
                invalid,
                service,
                value,
            } => (target, served_by, invalid, service, value),
            Outcome::Admin => {
                let get = method == "GET" || head_only;
                let path = info.path.split('?').next().unwrap_or("/");
                let (status, content_type, body) = inner.admin(get, path);
                return self
                    .answer(status, content_type, &body, None, keep_local, head_only)
                    .await;
            }
            Outcome::Reply {
                status,
                body,
                invalid,
            } => {
                inner.stats.status(status);
                return self
                    .answer(status, TEXT, &body, invalid.as_ref(), keep_local, head_only)
                    .await;
            }
        };

        if inner.table.speaks_h2_only(target_addr) {
            // Counted again when hyper routes it.
            inner.stats.forget(&served_by);
            return Next::Handoff;
        }
        let baggage = if inner.config.header_to_baggage {
            crate::edge::baggage_for(values(headers, lane_header), values(headers, "baggage"))
        } else {
            None
        };
        // The head names the target only when the request has no Host of its own (HTTP/1.0
        // origin form); then a retry on another target would need a new head.
        let retryable = info.absolute || values(headers, "host").next().is_some();
        self.wbuf.clear();
        upstream_head(
            &mut self.wbuf,
            method,
            &info,
            headers,
            target_addr,
            &self.client_ip,
            baggage.as_ref().map(http::HeaderValue::as_bytes),
        );

        let mut body = BodyState::new(info.framing, false);
        if let Err(e) = body.take(&mut self.rbuf, &mut self.wbuf) {
            let why = format!("malformed chunked request body: {e}");
            self.reply_and_close(StatusCode::BAD_REQUEST, &why).await;
            return Next::Close;
        }
        // An instance that refuses the connection has been sent nothing: the request goes to the
        // next candidate of the same routing decision (another instance of the lane, else the
        // fallback the routing invariant gives), as an instance that died before its health
        // check noticed still is in the table.
        let (mut target_addr, mut served_by) = (target_addr, served_by);
        let mut refused: Vec<SocketAddr> = Vec::new();
        let connected = loop {
            match self.upstream(target_addr).await {
                Ok(up) => break Ok(up),
                Err(e) if e.refused && retryable && refused.len() < MAX_RETRIES => {
                    refused.push(target_addr);
                    let Some((next, next_served_by)) =
                        inner.retry_target(&service, &value, &refused)
                    else {
                        break Err(e);
                    };
                    if inner.table.speaks_h2_only(next) {
                        inner.stats.forget(&next_served_by);
                        break Err(e);
                    }
                    tracing::warn!(
                        "{} at {target_addr} refused the connection ({}); sending the request \
                         to {} at {next} instead",
                        served_by.to_str().unwrap_or(""),
                        e.why,
                        next_served_by.to_str().unwrap_or("")
                    );
                    inner.stats.forget(&served_by);
                    target_addr = next;
                    served_by = next_served_by;
                }
                Err(e) => break Err(e),
            }
        };
        let ctx = RespCtx {
            target: target_addr,
            served_by: &served_by,
            invalid: invalid.as_ref(),
            head_only,
            upgrade_asked: info.upgrade.is_some(),
            v11,
            keep,
        };
        let mut up = match connected {
            Ok(up) => up,
            Err(e) => {
                return self.gateway_error(&ctx, e, body.is_done()).await;
            }
        };
        let mut resp_head = std::mem::take(&mut self.rhead);

        if !body.is_done() {
            // The body streams up while the response comes down: full duplex until both end.
            if let Err(e) = send(&mut up.stream, &self.wbuf, self.send_timeout()).await {
                return self
                    .gateway_error(&ctx, self.send_failure(e, &ctx), false)
                    .await;
            }
            let next = match self.duplex(&mut up, &mut body, &mut resp_head, &ctx).await {
                Duplex::Done(next) => next,
                Duplex::Reusable => {
                    up.reused = true;
                    self.keep(up);
                    Next::KeepAlive
                }
                Duplex::Failed(why) => {
                    return self.gateway_error(&ctx, why, false).await;
                }
                Duplex::BadBody(e) => {
                    let why = format!("malformed chunked request body: {e}");
                    self.reply_and_close(StatusCode::BAD_REQUEST, &why).await;
                    return Next::Close;
                }
                Duplex::Gone => return Next::Close,
                Duplex::ClientStalled(after) => {
                    let why = format!(
                        "lane router: the request body stalled: no byte of it came for {after:?} \
                         (LANE_ROUTER_BODY_TIMEOUT)"
                    );
                    self.reply_and_close(StatusCode::REQUEST_TIMEOUT, &why)
                        .await;
                    return Next::Close;
                }
            };
            self.rhead = resp_head;
            return next;
        }

        // The whole request is in wbuf: send it; read the response head (relaying interim
        // responses). A reused connection that upstream closed meanwhile is replaced once if the
        // request can be sent again.
        let replayable = is_idempotent(method);
        loop {
            let got = match send(&mut up.stream, &self.wbuf, self.send_timeout()).await {
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    Err(UpError::NotReading(self.upstream_not_reading(&ctx)))
                }
                Err(error) => Err(UpError::Io {
                    error,
                    received: false,
                }),
                Ok(()) => {
                    let timeout = self.inner.config.limits.response_timeout;
                    self.watchdog.set(timeout);
                    tokio::select! {
                        got = read_response_head(
                            &mut up.stream,
                            &mut up.buf,
                            &mut resp_head,
                            &mut self.down,
                            v11,
                            &mut self.scratch,
                        ) => got,
                        () = self.watchdog.expired() => Err(UpError::TimedOut(timeout)),
                    }
                }
            };
            match got {
                Ok(()) => break,
                Err(e) if up.reused && replayable && e.nothing_received() => {
                    match self.connect(target_addr).await {
                        Ok(fresh) => up = fresh,
                        Err(e) => {
                            return self.gateway_error(&ctx, e, true).await;
                        }
                    }
                }
                Err(e) => {
                    return self.gateway_error(&ctx, Failure::from(e), true).await;
                }
            }
        }

        self.wbuf.clear();
        let keep_ok = !self.stopping();
        let prepared = match prepare_response(&resp_head, &mut self.wbuf, &ctx, keep_ok) {
            Ok(prepared) => prepared,
            Err(why) => {
                return self.gateway_error(&ctx, Failure::bad(why), true).await;
            }
        };
        self.inner.stats.status(prepared.status);
        self.rhead = resp_head;

        if prepared.upgraded {
            // The head, then whatever either side already sent, then both ways until one closes.
            self.wbuf.extend_from_slice(&up.buf);
            let timeout = self.send_timeout();
            if send(&mut self.down, &self.wbuf, timeout).await.is_err()
                || send(&mut up.stream, &self.rbuf, timeout).await.is_err()
            {
                return Next::Close;
            }
            let timeout = self.inner.config.limits.send_timeout;
            return match tunnel(&mut self.down, &mut up.stream, timeout).await {
                Err((side, e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.inner.stats.send_timed_out(side);
                    tracing::info!(
                        "the {} side of an upgraded connection through {} at {} took no byte \
                         for {timeout:?} (LANE_ROUTER_SEND_TIMEOUT); closing both",
                        side.name(),
                        ctx.served_by.to_str().unwrap_or(""),
                        ctx.target
                    );
                    Next::Abort
                }
                _ => Next::Close,
            };
        }

        // The head and the body bytes already here in one write; the rest as it comes.
        let mut rbody = BodyState::new(prepared.framing, prepared.decode);
        if rbody.take(&mut up.buf, &mut self.wbuf).is_err() {
            return self
                .gateway_error(&ctx, Failure::bad("its chunked body is malformed"), true)
                .await;
        }
        if let Err(e) = send(
            &mut self.down,
            &self.wbuf,
            self.inner.config.limits.send_timeout,
        )
        .await
        {
            return client_write_failed(e, &self.inner, &ctx);
        }
        if !rbody.is_done() {
            let relayed = pump(
                &mut up.stream,
                &mut up.buf,
                &mut self.down,
                &mut rbody,
                &mut self.scratch,
                self.inner.config.limits.body_timeout,
                self.inner.config.limits.send_timeout,
            )
            .await;
            if let Err(e) = relayed {
                return relay_failed(e, &self.inner, &ctx);
            }
        }
        if prepared.upstream_keeps && up.buf.is_empty() {
            up.reused = true;
            self.keep(up);
        }
        if prepared.keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Forwards the rest of a request body while the response comes back, both at once: upstream
    /// may answer (even stream its answer) before it has read the whole body.
    async fn duplex(
        &mut self,
        up: &mut Upstream,
        body: &mut BodyState,
        resp_head: &mut Vec<u8>,
        ctx: &RespCtx<'_>,
    ) -> Duplex {
        let stopping = self.stopping();
        let (mut ur, mut uw) = up.stream.split();
        let (mut dr, mut dw) = self.down.split();
        let mut out = Vec::new();
        let body_timeout = self.inner.config.limits.body_timeout;
        let send_timeout = self.inner.config.limits.send_timeout;
        let mut request = std::pin::pin!(pump(
            &mut dr,
            &mut self.rbuf,
            &mut uw,
            body,
            &mut out,
            body_timeout,
            send_timeout
        ));
        let mut pumping = true;
        let mut sent_whole = true;
        let mut head_sent = false;
        macro_rules! on_request {
            ($sent:expr) => {
                match $sent {
                    Ok(()) => pumping = false,
                    // Broken framing: a 400, unless a response is already under way.
                    Err(PumpError::Source(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return if head_sent {
                            Duplex::Done(Next::Abort)
                        } else {
                            Duplex::BadBody(e)
                        };
                    }
                    // The client stopped sending its body: a 408 unless a response is under way
                    // (then it is cut); the upstream connection is not kept either way.
                    Err(PumpError::Stalled(after)) => {
                        self.inner.stats.body_timed_out(Side::Client);
                        tracing::info!(
                            "a request body to {} at {} stalled for {after:?} \
                             (LANE_ROUTER_BODY_TIMEOUT); closing the client's connection",
                            ctx.served_by.to_str().unwrap_or(""),
                            ctx.target
                        );
                        return if head_sent {
                            Duplex::Done(Next::Abort)
                        } else {
                            Duplex::ClientStalled(after)
                        };
                    }
                    // The client went away mid-body: nothing to answer.
                    Err(PumpError::Source(e)) => {
                        tracing::debug!("request body: client: {e}");
                        return Duplex::Gone;
                    }
                    // Upstream stopped reading; it may still have answered.
                    // Stopped for the send timeout: a 504 unless it has started answering
                    // (then its answer is relayed, and the connections close after it).
                    Err(PumpError::Sink(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                        self.inner.stats.send_timed_out(Side::Upstream);
                        tracing::info!(
                            "{} at {} took none of a request body for {send_timeout:?} \
                             (LANE_ROUTER_SEND_TIMEOUT); sending no more of it",
                            ctx.served_by.to_str().unwrap_or(""),
                            ctx.target
                        );
                        if !head_sent {
                            return Duplex::Failed(Failure::from(UpError::NotReading(
                                send_timeout,
                            )));
                        }
                        pumping = false;
                        sent_whole = false;
                    }
                    Err(PumpError::Sink(e)) => {
                        tracing::debug!("request body: upstream: {e}");
                        pumping = false;
                        sent_whole = false;
                    }
                }
            };
        }

        // The response head (interim ones relayed as they come).
        {
            let mut head = std::pin::pin!(read_response_head(
                &mut ur,
                &mut up.buf,
                resp_head,
                &mut dw,
                ctx.v11,
                &mut self.scratch,
            ));
            // The response timeout runs once the whole request is sent.
            let timeout = self.inner.config.limits.response_timeout;
            let mut armed = false;
            loop {
                if !pumping && !armed {
                    armed = true;
                    self.watchdog.set(timeout);
                }
                tokio::select! {
                    sent = &mut request, if pumping => on_request!(sent),
                    got = &mut head => match got {
                        Ok(()) => break,
                        Err(e) => return Duplex::Failed(Failure::from(e)),
                    },
                    () = self.watchdog.expired(), if armed => {
                        return Duplex::Failed(Failure::from(UpError::TimedOut(timeout)));
                    }
                }
            }
        }

        // Keep-alive only if the request was all sent before the response head goes out.
        let keep_ok = !pumping && sent_whole && !stopping;
        self.wbuf.clear();
        let prepared = match prepare_response(resp_head, &mut self.wbuf, ctx, keep_ok) {
            Ok(p) if p.upgraded => {
                return Duplex::Failed(Failure::bad(
                    "it switched protocols before the request body was sent",
                ));
            }
            Ok(p) => p,
            Err(why) => return Duplex::Failed(Failure::bad(why)),
        };
        self.inner.stats.status(prepared.status);
        let mut rbody = BodyState::new(prepared.framing, prepared.decode);
        if rbody.take(&mut up.buf, &mut self.wbuf).is_err() {
            return Duplex::Failed(Failure::bad("its chunked body is malformed"));
        }
        if let Err(e) = send(&mut dw, &self.wbuf, send_timeout).await {
            return Duplex::Done(client_write_failed(e, &self.inner, ctx));
        }
        head_sent = true;
        {
            let mut relay = std::pin::pin!(pump(
                &mut ur,
                &mut up.buf,
                &mut dw,
                &mut rbody,
                &mut self.scratch,
                body_timeout,
                send_timeout
            ));
            loop {
                tokio::select! {
                    sent = &mut request, if pumping => on_request!(sent),
                    relayed = &mut relay => match relayed {
                        Ok(()) => break,
                        Err(e) => return Duplex::Done(relay_failed(e, &self.inner, ctx)),
                    },
                }
            }
        }
        if pumping || !sent_whole || !prepared.keep {
            return Duplex::Done(Next::Close);
        }
        if prepared.upstream_keeps && up.buf.is_empty() {
            return Duplex::Reusable;
        }
        Duplex::Done(Next::KeepAlive)
    }

    /// A kept connection to `addr` that upstream has not closed, or a new one.
    async fn upstream(&mut self, addr: SocketAddr) -> Result<Upstream, Failure> {
        while let Some(i) = self.kept.iter().position(|u| u.addr == addr) {
            let up = self.kept.swap_remove(i);
            if idle(&up.stream) {
                return Ok(up);
            }
        }
        self.connect(addr).await
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Upstream, Failure> {
        let timeout = self.inner.config.limits.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(Failure {
                    timeout: false,
                    refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
                    why: format!("connect: {e}"),
                });
            }
            Err(_) => {
                return Err(Failure {
                    timeout: true,
                    refused: false,
                    why: format!(
                        "it did not accept the connection within {timeout:?} \
                         (LANE_ROUTER_CONNECT_TIMEOUT)"
                    ),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Upstream {
            addr,
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            reused: false,
        })
    }

    fn keep(&mut self, up: Upstream) {
        if self.kept.len() >= MAX_KEPT {
            self.kept.remove(0);
        }
        self.kept.push(up);
    }

    /// Answers a request the router handles itself (its own endpoints, routing errors).
    async fn answer(
        &mut self,
        status: StatusCode,
        content_type: &str,
        body: &str,
        invalid: Option<&http::HeaderValue>,
        keep: bool,
        head_only: bool,
    ) -> Next {
        let extra: Vec<(&str, &[u8])> = invalid
            .map(|why| (INVALID, why.as_bytes()))
            .into_iter()
            .collect();
        self.reply(
            status,
            content_type,
            body.as_bytes(),
            &extra,
            keep,
            head_only,
        )
        .await;
        if keep { Next::KeepAlive } else { Next::Close }
    }

    /// Answers 502 (504 for a timeout) for a request that could not be forwarded, naming the
    /// instance and saying why. `body_done`: the request body was read whole (otherwise the
    /// connection closes).
    async fn gateway_error(
        &mut self,
        ctx: &RespCtx<'_>,
        failure: Failure,
        body_done: bool,
    ) -> Next {
        let (status, what) = if failure.timeout {
            (StatusCode::GATEWAY_TIMEOUT, "timed out")
        } else {
            (StatusCode::BAD_GATEWAY, "could not be reached")
        };
        self.inner.stats.status(status);
        let body = format!(
            "lane router: {} at {} {what}: {}\n",
            ctx.served_by.to_str().unwrap_or(""),
            ctx.target,
            failure.why
        );
        let mut extra: Vec<(&str, &[u8])> = vec![(SERVED_BY, ctx.served_by.as_bytes())];
        if let Some(why) = ctx.invalid {
            extra.push((INVALID, why.as_bytes()));
        }
        let keep = ctx.keep && body_done && !self.stopping();
        self.reply(status, TEXT, body.as_bytes(), &extra, keep, ctx.head_only)
            .await;
        if keep { Next::KeepAlive } else { Next::Close }
    }

    /// Writes a response the router makes itself.
    async fn reply(
        &mut self,
        status: StatusCode,
        content_type: &str,
        body: &[u8],
        extra: &[(&str, &[u8])],
        keep: bool,
        head_only: bool,
    ) {
        self.wbuf.clear();
        let w = &mut self.wbuf;
        put_status_line(w, status.as_u16(), status.canonical_reason().unwrap_or(""));
        put_header(w, b"content-type", content_type.as_bytes());
        put_length(w, body.len() as u64);
        for (name, value) in extra {
            put_header(w, name.as_bytes(), value);
        }
        if !keep {
            w.extend_from_slice(b"connection: close\r\n");
        } else if !self.v11 {
            w.extend_from_slice(b"connection: keep-alive\r\n");
        }
        w.extend_from_slice(b"\r\n");
        if !head_only {
            w.extend_from_slice(body);
        }
        if let Err(e) = send(
            &mut self.down,
            &self.wbuf,
            self.inner.config.limits.send_timeout,
        )
        .await
            && e.kind() == std::io::ErrorKind::TimedOut
        {
            self.inner.stats.send_timed_out(Side::Client);
        }
    }

    fn send_timeout(&self) -> Duration {
        self.inner.config.limits.send_timeout
    }

    /// Counts and logs an instance that took no byte of a request for the send timeout; the
    /// timeout.
    fn upstream_not_reading(&self, ctx: &RespCtx<'_>) -> Duration {
        let after = self.send_timeout();
        self.inner.stats.send_timed_out(Side::Upstream);
        tracing::info!(
            "{} at {} took none of a request for {after:?} (LANE_ROUTER_SEND_TIMEOUT)",
            ctx.served_by.to_str().unwrap_or(""),
            ctx.target
        );
        after
    }

    /// Why sending a request upstream failed: a 504 when the instance stopped reading it.
    fn send_failure(&self, e: std::io::Error, ctx: &RespCtx<'_>) -> Failure {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Failure::from(UpError::NotReading(self.upstream_not_reading(ctx)))
        } else {
            Failure::bad(e)
        }
    }

    async fn reply_and_close(&mut self, status: StatusCode, why: &str) {
        let body = format!("{why}\n");
        self.inner.stats.status(status);
        self.reply(status, TEXT, body.as_bytes(), &[], false, false)
            .await;
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Writes the head of the request to send upstream: origin-form target, HTTP/1.1, the client's
/// headers minus hop-by-hop ones, `Host` kept (or the absolute URI's, or the target's),
/// `x-forwarded-for` with the client's address appended, `x-forwarded-proto: http` unless the
/// client said otherwise, and the framing and upgrade headers this hop needs. `baggage`, when set,
/// replaces the client's `baggage` lines (the lane header as baggage, [`crate::edge`]).
fn upstream_head(
    w: &mut Vec<u8>,
    method: &str,
    info: &ReqInfo,
    headers: &[Header],
    target: SocketAddr,
    client_ip: &[u8],
    baggage: Option<&[u8]>,
) {
    w.extend_from_slice(method.as_bytes());
    w.push(b' ');
    if info.path.is_empty() || info.path.starts_with('?') {
        w.push(b'/');
    }
    w.extend_from_slice(info.path.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    let mut has_proto = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("host") {
            if info.absolute {
                continue;
            }
            has_host = true;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // Written once below, whatever the client's spelling (`5, 5`, repeats).
            continue;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked (checked): the body passes through as it came, so its codings do too.
        } else if h.name.eq_ignore_ascii_case(FORWARDED_FOR) {
            // Written once below, with this client appended.
            continue;
        } else if h.name.eq_ignore_ascii_case(FORWARDED_PROTO) {
            has_proto = true;
        } else if is_hop_by_hop(h, headers)
            || (baggage.is_some() && h.name.eq_ignore_ascii_case("baggage"))
        {
            continue;
        }
        put_header(w, h.name.as_bytes(), h.value);
    }
    if let Some(baggage) = baggage {
        put_header(w, b"baggage", baggage);
    }
    if !client_ip.is_empty() {
        w.extend_from_slice(FORWARDED_FOR.as_bytes());
        w.extend_from_slice(b": ");
        for earlier in values(headers, FORWARDED_FOR) {
            w.extend_from_slice(earlier);
            w.extend_from_slice(b", ");
        }
        w.extend_from_slice(client_ip);
        w.extend_from_slice(b"\r\n");
    }
    if !has_proto {
        put_header(w, FORWARDED_PROTO.as_bytes(), b"http");
    }
    if let (Framing::Length(n), true) = (info.framing, info.has_length) {
        put_length(w, n);
    }
    if !has_host {
        match info.host {
            Some(host) if info.absolute => put_header(w, b"host", host.as_bytes()),
            _ => put_header(w, b"host", host_for(target).as_bytes()),
        }
    }
    if let Some(protocol) = info.upgrade {
        w.extend_from_slice(b"connection: upgrade\r\n");
        put_header(w, b"upgrade", protocol);
    }
    w.extend_from_slice(b"\r\n");
}

/// What the response to a forwarded request depends on.
struct RespCtx<'a> {
    /// The instance the request went to.
    target: SocketAddr,
    served_by: &'a http::HeaderValue,
    invalid: Option<&'a http::HeaderValue>,
    head_only: bool,
    upgrade_asked: bool,
    /// The client speaks HTTP/1.1 (else 1.0).
    v11: bool,
    /// The client may keep the connection after this exchange.
    keep: bool,
}

/// A response head, checked and rewritten for downstream.
struct Prepared {
    status: StatusCode,
    framing: Framing,
    /// Chunked upstream, sent decoded (to an HTTP/1.0 client).
    decode: bool,
    upgraded: bool,
    /// The downstream connection stays open after this response.
    keep: bool,
    /// The upstream connection can carry another request after this response.
    upstream_keeps: bool,
}

/// How a full-duplex exchange ended.
enum Duplex {
    Done(Next),
    /// Done, both connections reusable.
    Reusable,
    /// No usable response head came.
    Failed(Failure),
    /// The request body's chunked framing is broken.
    BadBody(std::io::Error),
    /// The client went away.
    Gone,
    /// The client sent no byte of its request body for this long, before any response went out.
    ClientStalled(Duration),
}

/// Checks the upstream response head `head` and writes the head to send downstream into `w`:
/// status line, `x-lane-served-by` (this hop first, then the hops upstream reported), upstream's
/// headers minus hop-by-hop ones, its body framing (a canonical `content-length`, or its transfer
/// codings as they were) and this hop's connection headers. `keep_ok`: nothing on this side stops
/// the connection from being kept. An `Err` says why the response cannot be used.
fn prepare_response(
    head: &[u8],
    w: &mut Vec<u8>,
    ctx: &RespCtx,
    keep_ok: bool,
) -> Result<Prepared, String> {
    let mut slots = [const { MaybeUninit::<Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, head, &mut slots)
    {
        Ok(Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(UpError::TooLarge.to_string()),
        Err(e) => return Err(UpError::Malformed(e.to_string()).to_string()),
        Ok(Status::Partial) => return Err(UpError::Malformed("incomplete head".into()).to_string()),
    }
    let code = resp.code.unwrap_or(502);
    let status = StatusCode::from_u16(code).map_err(|_| format!("it answered status {code}"))?;
    let headers: &[Header] = resp.headers;
    let upgraded = code == 101;
    if upgraded && !ctx.upgrade_asked {
        return Err("it switched protocols unasked (101)".into());
    }
    let bodiless = upgraded || ctx.head_only || code == 204 || code == 304;
    let framing = if bodiless {
        Framing::Length(0)
    } else {
        response_framing(headers)?
    };
    let decode = framing == Framing::Chunked && !ctx.v11;
    if decode
        && values(headers, "transfer-encoding")
            .flat_map(|v| v.split(|b| *b == b','))
            .map(trim)
            .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"chunked"))
    {
        return Err("it used a transfer coding an HTTP/1.0 client cannot take".into());
    }
    let upstream_keeps = framing != Framing::Close
        && ((resp.version == Some(1) && !has_token(headers, "close"))
            || (resp.version == Some(0) && has_token(headers, "keep-alive")));
    let keep = ctx.keep && keep_ok && framing != Framing::Close && !decode && !upgraded;

    put_status_line(w, code, resp.reason.unwrap_or(""));
    w.extend_from_slice(SERVED_BY.as_bytes());
    w.extend_from_slice(b": ");
    w.extend_from_slice(ctx.served_by.as_bytes());
    for hop in values(headers, SERVED_BY) {
        w.extend_from_slice(b", ");
        w.extend_from_slice(hop);
    }
    w.extend_from_slice(b"\r\n");
    for h in headers {
        let name = h.name;
        let pass = if name.eq_ignore_ascii_case(SERVED_BY) {
            false
        } else if name.eq_ignore_ascii_case(INVALID) {
            ctx.invalid.is_none()
        } else if name.eq_ignore_ascii_case("content-length") {
            // Upstream's own for a body that is not sent (HEAD, 304); else written below.
            bodiless && code != 204 && !upgraded
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The body passes through as it came, so its codings do too (HTTP/1.1 only).
            !decode && ctx.v11 && code != 204 && !upgraded
        } else {
            !is_hop_by_hop(h, headers)
        };
        if pass {
            put_header(w, name.as_bytes(), h.value);
        }
    }
    if let (Framing::Length(n), false) = (framing, bodiless) {
        put_length(w, n);
    }
    if let Some(why) = ctx.invalid {
        put_header(w, INVALID.as_bytes(), why.as_bytes());
    }
    if upgraded {
        w.extend_from_slice(b"connection: upgrade\r\n");
        if let Some(protocol) = values(headers, "upgrade").next() {
            put_header(w, b"upgrade", protocol);
        }
    } else if !keep {
        w.extend_from_slice(b"connection: close\r\n");
    } else if !ctx.v11 {
        w.extend_from_slice(b"connection: keep-alive\r\n");
    }
    w.extend_from_slice(b"\r\n");
    Ok(Prepared {
        status,
        framing,
        decode,
        upgraded,
        keep,
        upstream_keeps,
    })
}

fn request_info<'h>(
    target: &'h str,
    v11: bool,
    headers: &'h [Header<'h>],
) -> Result<ReqInfo<'h>, String> {
    // No request target form holds a fragment (RFC 9112 §3.2): `#` is never part of one, and a
    // router that cut the authority at it differently from the upstream would route by a name the
    // upstream never sees.
    if target.contains('#') {
        return Err(format!(
            "the request target `{}` holds a fragment (`#`), which no request target may",
            target.escape_default()
        ));
    }
    let (absolute, authority, path) = if target.starts_with('/') || target == "*" {
        (false, None, target)
    } else if let Some((scheme, rest)) = target.split_once("://")
        && !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        // Any `user:password@` is dropped (RFC 9110 §4.2.4: not to be sent on).
        let authority = crate::uri::authority_host(&rest[..end]).ok_or_else(|| {
            format!(
                "the authority `{}` of the request target is not a valid `[userinfo@]host[:port]`",
                rest[..end].escape_default()
            )
        })?;
        (true, Some(authority), &rest[end..])
    } else {
        return Err(format!(
            "the request target `{}` is neither a path nor an absolute URI",
            target.escape_default()
        ));
    };

    let mut host_header = None;
    let mut chunked = None;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return Err("the request has more than one Host header".into());
            }
            let value = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| crate::uri::is_valid_host(v))
                .ok_or_else(|| {
                    format!(
                        "the Host header `{}` is not a valid `host[:port]`",
                        h.value.escape_ascii()
                    )
                })?;
            host_header = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = Some(ends_in_chunked(h.value));
        }
    }
    if v11 && host_header.is_none() {
        return Err("the HTTP/1.1 request has no Host header (RFC 9112 §3.2 requires one)".into());
    }
    let length = content_length(headers).map_err(|e| match e {
        LengthError::NotANumber => "the request's Content-Length is not a number",
        LengthError::Conflict => "the request has conflicting Content-Length headers",
    })?;
    let framing = match (chunked, length) {
        (Some(_), Some(_)) => {
            return Err("the request has both Transfer-Encoding and Content-Length".into());
        }
        (Some(true), None) => Framing::Chunked,
        (Some(false), None) => {
            return Err("the request's Transfer-Encoding does not end in `chunked`".into());
        }
        (None, length) => Framing::Length(length.unwrap_or(0)),
    };
    let upgrade = if has_token(headers, "upgrade") {
        values(headers, "upgrade").next()
    } else {
        None
    };
    Ok(ReqInfo {
        host: if absolute { authority } else { host_header },
        absolute,
        path,
        framing,
        has_length: length.is_some(),
        // HTTP/1.0 has no chunked coding: such a request's framing is suspect, so close after it
        // (RFC 9112 §6.1).
        close: (v11 && has_token(headers, "close")) || (!v11 && chunked.is_some()),
        keep_alive: !v11 && has_token(headers, "keep-alive"),
        upgrade,
    })
}

fn response_framing(headers: &[Header]) -> Result<Framing, String> {
    // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length; chunked last means chunked, any
    // other final coding means the body ends when upstream closes.
    if let Some(last) = values(headers, "transfer-encoding").last() {
        return Ok(if ends_in_chunked(last) {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let length = content_length(headers).map_err(|e| match e {
        LengthError::NotANumber => "its Content-Length is not a number",
        LengthError::Conflict => "it sent conflicting Content-Length headers",
    })?;
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked`.
fn ends_in_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"");
    trim(last).eq_ignore_ascii_case(b"chunked")
}

enum LengthError {
    NotANumber,
    Conflict,
}

/// The length the `Content-Length` headers give (`5, 5` and repeats allowed if they agree).
fn content_length(headers: &[Header]) -> Result<Option<u64>, LengthError> {
    let mut length = None;
    for part in values(headers, "content-length").flat_map(|v| v.split(|b| *b == b',')) {
        let n = parse_length(part).ok_or(LengthError::NotANumber)?;
        if length.is_some_and(|l| l != n) {
            return Err(LengthError::Conflict);
        }
        length = Some(n);
    }
    Ok(length)
}

fn parse_length(text: &[u8]) -> Option<u64> {
    let text = trim(text);
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The values of the headers named `name`.
fn values<'h>(headers: &'h [Header<'h>], name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The tokens of the `Connection` headers.
fn connection_tokens<'h>(headers: &'h [Header<'h>]) -> impl Iterator<Item = &'h [u8]> + 'h {
    values(headers, "connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(trim)
}

fn has_token(headers: &[Header], token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `h` is not forwarded: hop-by-hop, named by `Connection`, or a `te` other than
/// `trailers`.
fn is_hop_by_hop(h: &Header, all: &[Header]) -> bool {
    let name = h.name;
    if name.eq_ignore_ascii_case("te") {
        return !trim(h.value).eq_ignore_ascii_case(b"trailers");
    }
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
        || connection_tokens(all).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
}

/// `HTTP/1.1 <code> <reason>`: the status line of every response the router sends.
fn put_status_line(w: &mut Vec<u8>, code: u16, reason: &str) {
    w.extend_from_slice(b"HTTP/1.1 ");
    w.extend_from_slice(&itoa3(code));
    w.push(b' ');
    w.extend_from_slice(reason.as_bytes());
    w.extend_from_slice(b"\r\n");
}

/// `content-length: n`, without allocating.
fn put_length(w: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    put_header(w, b"content-length", &digits[i..]);
}

fn put_header(w: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    w.extend_from_slice(name);
    w.extend_from_slice(b": ");
    w.extend_from_slice(value);
    w.extend_from_slice(b"\r\n");
}

/// The length of the head at the front of `buf` (through its empty line, CRLF or bare LF), once it
/// is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|b| *b == b'\n') {
        let at = from + i;
        match buf.get(at + 1..) {
            Some([b'\n', ..]) => return Some(at + 2),
            Some([b'\r', b'\n', ..]) => return Some(at + 3),
            _ => from = at + 1,
        }
    }
    None
}

/// Whether a response head is an interim one to pass on (1xx, but not 101).
fn is_interim(head: &[u8]) -> bool {
    head.len() > 12 && head.starts_with(b"HTTP/1.") && head[9] == b'1' && &head[9..12] != b"101"
}

/// An interim response head, rewritten for downstream into `out`.
fn interim_head(head: &[u8], out: &mut Vec<u8>) -> Result<(), UpError> {
    let mut headers = [EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(UpError::TooLarge),
        Err(e) => return Err(UpError::Malformed(e.to_string())),
        Ok(Status::Partial) => return Err(UpError::Malformed("incomplete head".into())),
    }
    out.clear();
    put_status_line(out, resp.code.unwrap_or(100), resp.reason.unwrap_or(""));
    for h in resp.headers.iter() {
        if !is_hop_by_hop(h, resp.headers) {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Whether a kept upstream connection is idle: upstream has neither closed it nor sent anything
/// unasked. Costs no system call in the common case: tokio clears a socket's read readiness after
/// a short read (the last read of a response), and sets it again only when epoll reports the
/// socket readable, which for an idle connection means EOF or stray bytes. When readiness is set,
/// one non-blocking read tells which.
fn idle(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // Unconstrained: with the task's cooperative budget spent, readiness would read `Pending`.
    let ready = tokio::task::unconstrained(std::future::poll_fn(|cx| stream.poll_read_ready(cx)));
    match std::pin::pin!(ready).poll(&mut cx) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Err(_)) => false,
        std::task::Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// A status code's three digits.
fn itoa3(code: u16) -> [u8; 3] {
    let code = code.min(999);
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

/// The `Host` header for a request that came without one: the target's address, without the port
/// when it is 80.
fn host_for(target: SocketAddr) -> String {
    match (target.port(), target) {
        (80, SocketAddr::V4(a)) => a.ip().to_string(),
        (80, SocketAddr::V6(a)) => format!("[{}]", a.ip()),
        _ => target.to_string(),
    }
}

/// Why a request could not be forwarded: a 502, or a 504 when the instance was too slow.
struct Failure {
    timeout: bool,
    /// The instance refused the connection: nothing was sent, the request may go elsewhere.
    refused: bool,
    why: String,
}

impl Failure {
    fn bad(why: impl std::fmt::Display) -> Failure {
        Failure {
            timeout: false,
            refused: false,
            why: why.to_string(),
        }
    }
}

impl From<UpError> for Failure {
    fn from(e: UpError) -> Failure {
        Failure {
            timeout: matches!(e, UpError::TimedOut(_) | UpError::NotReading(_)),
            refused: false,
            why: e.to_string(),
        }
    }
}

/// Why an upstream response head could not be had.
enum UpError {
    /// A read or write failed; `received`: bytes of a response had come (or an interim response
    /// went out).
    Io {
        error: std::io::Error,
        received: bool,
    },
    /// Upstream closed; `received` bytes of a response had come.
    Closed {
        received: bool,
    },
    Malformed(String),
    TooLarge,
    /// Relaying an interim (1xx) response to the client failed.
    Downstream,
    /// No response head within the response timeout.
    TimedOut(Duration),
    /// Upstream took no byte of the request for the send timeout.
    NotReading(Duration),
}

impl UpError {
    /// Nothing at all came back: the request may never have reached upstream.
    fn nothing_received(&self) -> bool {
        match self {
            UpError::Closed { received } => !received,
            UpError::Io { error, received } => {
                !received
                    && matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionAborted
                    )
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for UpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpError::Io { error, .. } => write!(f, "{error}"),
            UpError::Closed { received: false } => {
                f.write_str("it closed the connection without answering")
            }
            UpError::Closed { received: true } => {
                f.write_str("it closed the connection in the middle of its response head")
            }
            UpError::Malformed(why) => write!(f, "its response is not valid HTTP/1.1 ({why})"),
            UpError::TooLarge => write!(
                f,
                "its response head is larger than {} KiB",
                MAX_HEAD / 1024
            ),
            UpError::Downstream => f.write_str("the client went away"),
            UpError::TimedOut(after) => write!(
                f,
                "it sent no response head within {after:?} (LANE_ROUTER_RESPONSE_TIMEOUT)"
            ),
            UpError::NotReading(after) => write!(
                f,
                "it took no byte of the request for {after:?} (LANE_ROUTER_SEND_TIMEOUT)"
            ),
        }
    }
}

/// Reads until a final response head has come; moves it from `buf` to `head`. Interim responses
/// (1xx other than 101) are passed to `down` when `relay` (the client speaks HTTP/1.1), else
/// dropped.
async fn read_response_head<R, W>(
    up: &mut R,
    buf: &mut BytesMut,
    head: &mut Vec<u8>,
    down: &mut W,
    relay: bool,
    scratch: &mut Vec<u8>,
) -> Result<(), UpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            match head_end(buf) {
                Some(len) if len > MAX_HEAD => return Err(UpError::TooLarge),
                Some(len) if is_interim(&buf[..len]) => {
                    if relay {
                        interim_head(&buf[..len], scratch)?;
                    }
                    buf.advance(len);
                    if relay && down.write_all(scratch).await.is_err() {
                        return Err(UpError::Downstream);
                    }
                    continue;
                }
                // The final head; parsed once, by the caller.
                Some(len) => {
                    head.clear();
                    head.extend_from_slice(&buf[..len]);
                    buf.advance(len);
                    return Ok(());
                }
                None if buf.len() >= MAX_HEAD => return Err(UpError::TooLarge),
                None => {}
            }
        }
        buf.reserve(READ_CHUNK);
        match up.read_buf(buf).await {
            Ok(0) => return Err(UpError::Closed { received }),
            Ok(_) => {}
            Err(error) => return Err(UpError::Io { error, received }),
        }
    }
}

/// Which side of a relayed body stalled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// The client, sending its request body.
    Client = 0,
    /// The instance, sending its response body.
    Upstream = 1,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

enum PumpError {
    Source(std::io::Error),
    Sink(std::io::Error),
    /// No byte came from the source for this long (the body timeout).
    Stalled(Duration),
}

impl std::fmt::Display for PumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PumpError::Source(e) => write!(f, "reading: {e}"),
            PumpError::Sink(e) => write!(f, "writing: {e}"),
            PumpError::Stalled(after) => {
                write!(f, "no byte came for {after:?} (LANE_ROUTER_BODY_TIMEOUT)")
            }
        }
    }
}

/// What becomes of the downstream connection when relaying a response body failed after its head
/// went out: upstream cut it short or stalled (reset, so the client cannot take it for whole), or
/// the client went away (close).
fn relay_failed(e: PumpError, inner: &crate::Inner, ctx: &RespCtx<'_>) -> Next {
    match e {
        PumpError::Stalled(_) => {
            inner.stats.body_timed_out(Side::Upstream);
            tracing::warn!(
                "{} at {} stalled in the middle of its response body: {e}; \
                 cutting the response to the client",
                ctx.served_by.to_str().unwrap_or(""),
                ctx.target
            );
            Next::Abort
        }
        PumpError::Source(_) => {
            tracing::debug!("response from upstream cut short: {e}");
            Next::Abort
        }
        PumpError::Sink(e) => client_write_failed(e, inner, ctx),
    }
}

/// What becomes of the downstream connection when writing a response to it failed: a client that
/// stopped reading (the send timeout) is reset, so that its unread bytes free at once; any other
/// failure (it went away) closes.
fn client_write_failed(e: std::io::Error, inner: &crate::Inner, ctx: &RespCtx<'_>) -> Next {
    if e.kind() == std::io::ErrorKind::TimedOut {
        inner.stats.send_timed_out(Side::Client);
        tracing::info!(
            "a client took none of the response from {} at {} for {:?} \
             (LANE_ROUTER_SEND_TIMEOUT); resetting its connection",
            ctx.served_by.to_str().unwrap_or(""),
            ctx.target,
            inner.config.limits.send_timeout
        );
        Next::Abort
    } else {
        tracing::debug!("response to the client cut short: {e}");
        Next::Close
    }
}

/// Writes all of `buf` to `w`; fails with [`std::io::ErrorKind::TimedOut`] when `w` takes no
/// byte for `timeout` (its peer stopped reading). A write that can go at once, the usual case,
/// arms no timer: the timer is only set up once the socket is full.
async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut buf: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    use std::task::Poll;
    while !buf.is_empty() {
        let at_once =
            std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *w).poll_write(cx, buf) {
                Poll::Ready(written) => Poll::Ready(Some(written)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
        let n = match at_once {
            Some(written) => written?,
            None => tokio::time::timeout(timeout, w.write(buf))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the peer took no byte for {timeout:?}"),
                    )
                })??,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Relays an upgraded connection (WebSocket) both ways until both sides have closed their
/// sending half, or one fails. Either side may stay silent as long as it likes; one that stops
/// taking what the other sends fails the tunnel after `send_timeout` (the error names its side).
async fn tunnel(
    down: &mut TcpStream,
    up: &mut TcpStream,
    send_timeout: Duration,
) -> Result<(), (Side, std::io::Error)> {
    async fn one_way<R, W>(src: &mut R, dst: &mut W, send_timeout: Duration) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = src.read(&mut buf).await?;
            if n == 0 {
                // Pass the end on, and keep relaying the other way.
                return dst.shutdown().await;
            }
            send(dst, &buf[..n], send_timeout).await?;
        }
    }
    let (mut dr, mut dw) = down.split();
    let (mut ur, mut uw) = up.split();
    let to_up = async {
        one_way(&mut dr, &mut uw, send_timeout)
            .await
            .map_err(|e| (Side::Upstream, e))
    };
    let to_down = async {
        one_way(&mut ur, &mut dw, send_timeout)
            .await
            .map_err(|e| (Side::Client, e))
    };
    tokio::try_join!(to_up, to_down).map(|_| ())
}

/// Copies the rest of a body from `src` (after what `buf` holds) to `dst`.
async fn pump<R, W>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    body: &mut BodyState,
    out: &mut Vec<u8>,
    timeout: Duration,
    send_timeout: Duration,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        out.clear();
        body.take(buf, out).map_err(PumpError::Source)?;
        if !out.is_empty() {
            send(dst, out, send_timeout)
                .await
                .map_err(PumpError::Sink)?;
        }
        if body.is_done() {
            return Ok(());
        }
        buf.reserve(READ_CHUNK);
        let read = tokio::time::timeout(timeout, src.read_buf(buf))
            .await
            .map_err(|_| PumpError::Stalled(timeout))?;
        if read.map_err(PumpError::Source)? == 0 {
            body.at_eof().map_err(PumpError::Source)?;
            return Ok(());
        }
    }
}

/// Where a body being relayed stands.
#[derive(Debug)]
enum BodyState {
    Length(u64),
    Chunked { scan: Chunked, decode: bool },
    Close,
    Done,
}

impl BodyState {
    fn new(framing: Framing, decode: bool) -> Self {
        match framing {
            Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked {
                scan: Chunked::default(),
                decode,
            },
            Framing::Close => BodyState::Close,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }

    /// Moves the body bytes at the front of `buf` to `out` (decoded, for `decode`).
    fn take(&mut self, buf: &mut BytesMut, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            BodyState::Done => {}
            BodyState::Length(left) => {
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyState::Done;
                }
            }
            BodyState::Chunked { scan, decode } => {
                let (used, done) = if *decode {
                    scan.feed(buf, |data| out.extend_from_slice(data))
                } else {
                    let r = scan.feed(buf, |_| {});
                    if let Ok((used, _)) = r {
                        out.extend_from_slice(&buf[..used]);
                    }
                    r
                }
                .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))?;
                buf.advance(used);
                if done {
                    *self = BodyState::Done;
                }
            }
            BodyState::Close => {
                out.extend_from_slice(buf);
                buf.clear();
            }
        }
        Ok(())
    }

    /// The source closed: fine for a close-delimited body, an error otherwise.
    fn at_eof(&mut self) -> std::io::Result<()> {
        match self {
            BodyState::Close | BodyState::Done => {
                *self = BodyState::Done;
                Ok(())
            }
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A scanner for chunked transfer coding (RFC 9112 §7.1): finds where a chunked body ends, checking
/// its framing, and hands out the data. The whole grammar is checked, not only the sizes: a chunk
/// size is hex digits, optionally followed by extensions (`;name`, `;name=token` or
/// `;name="quoted"`, with optional whitespace around `;` and `=`); each trailer line is a field
/// (`name: value`, a token name and a value without control bytes). Anything else (`5 junk`, a NUL
/// in an extension, a request line smuggled after the last chunk) is an error.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    /// Bytes of the trailer section so far (bounded like a head).
    trailer: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before the first digit of a chunk size.
    #[default]
    SizeStart,
    Size,
    /// Whitespace after the size or an extension: only `;` may follow.
    ExtWs,
    /// After `;`: whitespace, then an extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name: `=` or `;` may follow.
    ExtNameWs,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Just after a closing quote.
    ExtQuotedEnd,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
}

/// RFC 9110 §5.6.2 `tchar`: the bytes of a token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 §5.5 `field-vchar` or whitespace: what a field value may hold.
fn is_field_byte(b: u8) -> bool {
    is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// RFC 9110 §5.6.4 `qdtext`.
fn is_qdtext(b: u8) -> bool {
    is_ws(b) || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b) || b >= 0x80
}

impl Chunked {
    /// Scans `input`; calls `data` with each run of chunk data. Returns how many bytes belong to
    /// the body and whether it ended there.
    fn feed(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            if self.state == Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                data(&input[i..i + n]);
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            if matches!(
                self.state,
                TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf
            ) {
                self.trailer += 1;
                if self.trailer > MAX_HEAD {
                    return Err("trailer section too large");
                }
            }
            self.state = match (self.state, b) {
                (SizeStart | Size, b) if b.is_ascii_hexdigit() => {
                    if self.size > (u64::MAX >> 8) {
                        return Err("chunk size too large");
                    }
                    let digit = char::from(b).to_digit(16).unwrap_or(0);
                    self.size = self.size * 16 + u64::from(digit);
                    Size
                }
                (SizeStart, _) => return Err("invalid chunk size"),
                (Size | ExtToken | ExtQuotedEnd | ExtName, b'\r') => SizeLf,
                (Size | ExtToken | ExtQuotedEnd | ExtName, b';') => ExtNameStart,
                (Size | ExtToken | ExtQuotedEnd | ExtWs, b) if is_ws(b) => ExtWs,
                (ExtWs | ExtNameWs, b';') => ExtNameStart,
                (Size, _) => return Err("invalid chunk size"),
                (ExtWs, _) => return Err("invalid chunk extension"),
                (ExtNameStart, b) if is_ws(b) => ExtNameStart,
                (ExtNameStart | ExtName, b) if is_tchar(b) => ExtName,
                (ExtName | ExtNameWs, b) if is_ws(b) => ExtNameWs,
                (ExtName | ExtNameWs, b'=') => ExtValStart,
                (ExtValStart, b) if is_ws(b) => ExtValStart,
                (ExtValStart, b'"') => ExtQuoted,
                (ExtValStart | ExtToken, b) if is_tchar(b) => ExtToken,
                (ExtQuoted, b'"') => ExtQuotedEnd,
                (ExtQuoted, b'\\') => ExtQuotedEscape,
                (ExtQuoted, b) if is_qdtext(b) => ExtQuoted,
                (ExtQuotedEscape, b) if is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80 => {
                    ExtQuoted
                }
                (
                    ExtNameStart | ExtName | ExtNameWs | ExtValStart | ExtToken | ExtQuoted
                    | ExtQuotedEscape | ExtQuotedEnd,
                    _,
                ) => return Err("invalid chunk extension"),
                (SizeLf, b'\n') => {
                    if self.size == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (SizeLf, _) => return Err("chunk size line not ended by CRLF"),
                (DataCr, b'\r') => DataLf,
                (DataCr, _) => return Err("chunk data longer than its size"),
                (DataLf, b'\n') => SizeStart,
                (DataLf, _) => return Err("chunk data not ended by CRLF"),
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
                (TrailerStart | TrailerName | TrailerValue, b'\n') => {
                    return Err("bare LF in a trailer");
                }
                (TrailerName, b':') => TrailerValue,
                (TrailerStart | TrailerName, _) => return Err("invalid trailer field"),
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, b) if is_field_byte(b) => TrailerValue,
                (TrailerValue, _) => return Err("invalid trailer field value"),
                (TrailerLf, b'\n') => TrailerStart,
                (TrailerLf, _) => return Err("trailer line not ended by CRLF"),
                (EndLf, b'\n') => {
                    *self = Chunked::default();
                    return Ok((i, true));
                }
                (EndLf, _) => return Err("chunked body not ended by CRLF"),
                (Data, _) => unreachable!("handled above"),
            };
        }
        Ok((i, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], step: usize) -> Result<(usize, bool, Vec<u8>), &'static str> {
        let mut c = Chunked::default();
        let mut data = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let (n, done) = c.feed(piece, |d| data.extend_from_slice(d))?;
            used += n;
            if done {
                return Ok((used, true, data));
            }
        }
        Ok((used, false, data))
    }

    #[test]
    fn chunked_bodies_are_found_in_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (used, done, data) = scan_all(body, step).unwrap();
            assert!(done, "step {step}");
            assert_eq!(used, body.len() - 4, "step {step}");
            assert_eq!(data, b"hello, world");
        }
        let (used, done, data) = scan_all(b"A\r\n0123456789\r\n0\r\n\r\n", 100).unwrap();
        assert_eq!(
            (used, done, data.as_slice()),
            (20, true, &b"0123456789"[..])
        );
    }

    #[test]
    fn chunked_framing_errors_are_caught() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhello!\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\n\r\x00",
            b"5 junk\r\n",
            b"5 \r\n",
            b"5;\r\n",
            b"5;a\x00\r\n",
            b"5;a=\x01\r\n",
            b"5;a=\"x\x7f\"\r\n",
            b"5;a=b c\r\n",
            b"0\r\nGET /smuggled HTTP/1.1\r\n",
            b"0\r\n: no name\r\n",
            b"0\r\nx: a\x00b\r\n",
        ] {
            assert!(scan_all(bad, 100).is_err(), "{}", bad.escape_ascii());
        }
        assert!(!scan_all(b"5\r\nhel", 100).unwrap().1);
        for good in [
            &b"5 ; a = b ;c;d=\"q\\\"\\x\"\r\nhello\r\n0\r\n\r\n"[..],
            b"00;x\r\nt:\r\nu: v w \r\n\r\n",
        ] {
            assert!(scan_all(good, 100).unwrap().1, "{}", good.escape_ascii());
        }
    }

    fn parsed(raw: &'static [u8]) -> (String, bool, Vec<Header<'static>>) {
        let headers: &'static mut [Header<'static>] =
            Box::leak(Box::new([EMPTY_HEADER; MAX_HEADERS]));
        let mut req = httparse::Request::new(headers);
        assert!(req.parse(raw).unwrap().is_complete());
        (
            req.path.unwrap().to_owned(),
            req.version == Some(1),
            req.headers.to_vec(),
        )
    }

    fn info(raw: &'static [u8]) -> Result<(Option<String>, String, Framing), String> {
        let (target, v11, headers) = parsed(raw);
        let target: &'static str = Box::leak(target.into_boxed_str());
        let headers: &'static [Header<'static>] = Box::leak(headers.into_boxed_slice());
        request_info(target, v11, headers)
            .map(|i| (i.host.map(str::to_owned), i.path.to_owned(), i.framing))
    }

    #[test]
    fn request_targets_and_framing() {
        assert_eq!(
            info(b"GET /a?b HTTP/1.1\r\nHost: b.demo.localhost\r\n\r\n").unwrap(),
            (
                Some("b.demo.localhost".into()),
                "/a?b".into(),
                Framing::Length(0)
            )
        );
        assert_eq!(
            info(b"GET http://u:p@b.demo.localhost:7/x HTTP/1.1\r\nHost: other\r\n\r\n").unwrap(),
            (
                Some("b.demo.localhost:7".into()),
                "/x".into(),
                Framing::Length(0)
            )
        );
        assert_eq!(
            info(b"GET http://b.demo.localhost?q HTTP/1.1\r\nHost: b.demo.localhost\r\n\r\n")
                .unwrap()
                .1,
            "?q"
        );
        assert_eq!(
            info(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
                .unwrap()
                .2,
            Framing::Length(5)
        );
        assert_eq!(
            info(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .unwrap()
                .2,
            Framing::Chunked
        );
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET nonsense HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: b.demo.localhost@evil\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: b.demo.localhost, c.demo.localhost\r\n\r\n",
            b"GET http://b.demo.localhost#@c.demo.localhost/ HTTP/1.1\r\nHost: b\r\n\r\n",
            b"GET http://a@b@c.demo.localhost/ HTTP/1.1\r\nHost: b\r\n\r\n",
        ] {
            assert!(info(bad).is_err(), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers() {
        let (_, _, h) = parsed(
            b"GET / HTTP/1.1\r\nConnection: keep-alive, X-Secret\r\nx-secret: 1\r\nTE: trailers\r\n\
              Keep-Alive: 5\r\nx-lane: a\r\n\r\n",
        );
        let kept: Vec<&str> = h
            .iter()
            .filter(|x| !is_hop_by_hop(x, &h))
            .map(|x| x.name)
            .collect();
        assert_eq!(kept, ["TE", "x-lane"]);
        assert!(has_token(&h, "KEEP-ALIVE"));
    }

    #[test]
    fn heads_end_at_the_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert!(is_interim(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(is_interim(b"HTTP/1.1 103 Early Hints\r\n\r\n"));
        assert!(!is_interim(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"));
        assert!(!is_interim(b"HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn small_helpers() {
        assert_eq!(&itoa3(204), b"204");
        for n in [0, 7, 10, 12345, u64::MAX] {
            let mut w = Vec::new();
            put_length(&mut w, n);
            assert_eq!(w, format!("content-length: {n}\r\n").as_bytes());
        }
        assert_eq!(parse_length(b" 12 "), Some(12));
        assert_eq!(parse_length(b"1 2"), None);
        assert_eq!(host_for(([127, 0, 0, 1], 8080).into()), "127.0.0.1:8080");
        assert_eq!(host_for(([127, 0, 0, 1], 80).into()), "127.0.0.1");
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(host_for(v6), "[::1]");
    }
}
