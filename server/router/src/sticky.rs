//! Upstream affinity for HTTP/1.1: each downstream connection keeps its own upstream connection per
//! target, so a request skips the pooled client's checkout (a pool lock, a lazy connect future, and a
//! task spawned per request to put the connection back once the response body is read).
//!
//! A downstream HTTP/1.1 connection carries one request at a time (hyper reads the next request only
//! after the previous response is written), so its upstream connection is idle again by the next
//! request. Whenever the kept connection cannot take the request (busy, closed and not reconnectable,
//! or the request was refused before it was written), the request goes to the pooled client instead,
//! which behaves exactly as before.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// Upstream connections one downstream connection keeps (one per target, oldest dropped first).
const MAX_TARGETS: usize = 4;
/// Same as the pooled client's connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The upstream HTTP/1.1 connections of one downstream connection, by target.
#[derive(Default)]
pub(crate) struct Sticky {
    conns: Mutex<Vec<(SocketAddr, http1::SendRequest<Incoming>)>>,
}

/// What became of a request given to [`Sticky::send`].
pub(crate) enum Sent {
    Response(Response<Incoming>),
    /// Written (at least partly) and then failed: it cannot be retried.
    Failed(SendFailed),
    /// Not written: send it another way (the pooled client).
    Unsent(Request<Incoming>),
}

impl Sticky {
    /// Sends `req` (origin-form URI, `Host` set) on this downstream connection's upstream connection
    /// to `target`, connecting one if there is none.
    pub(crate) async fn send(&self, target: SocketAddr, req: Request<Incoming>) -> Sent {
        let kept = self.take(target);
        let mut sender = match kept {
            Some(s) if s.is_ready() => s,
            Some(s) if !s.is_closed() => {
                // Busy (a response body still streaming): leave it, use the pool this time.
                self.put(target, s);
                return Sent::Unsent(req);
            }
            _ => match connect(target).await {
                Some(s) => s,
                None => return Sent::Unsent(req),
            },
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                self.put(target, sender);
                Sent::Response(resp)
            }
            Err(mut e) => match e.take_message() {
                Some(req) => Sent::Unsent(req),
                None => Sent::Failed(SendFailed(e.into_error())),
            },
        }
    }

    fn take(&self, target: SocketAddr) -> Option<http1::SendRequest<Incoming>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let i = conns.iter().position(|(addr, _)| *addr == target)?;
        Some(conns.swap_remove(i).1)
    }

    fn put(&self, target: SocketAddr, sender: http1::SendRequest<Incoming>) {
        let evicted = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            let evicted = (conns.len() >= MAX_TARGETS).then(|| conns.remove(0));
            conns.push((target, sender));
            evicted
        };
        drop(evicted); // outside the lock: dropping closes that connection
    }
}

/// A new upstream connection, ready for a request; `None` if it cannot be made (the pooled client
/// then tries, and reports the error).
async fn connect(target: SocketAddr) -> Option<http1::SendRequest<Incoming>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(256 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    sender.ready().await.ok()?;
    Some(sender)
}

/// The URI to send on a direct upstream connection: `path` in origin form.
pub(crate) fn origin_form(path: PathAndQuery) -> Uri {
    if path.as_str() == "/" {
        Uri::default()
    } else {
        Uri::from(path)
    }
}

/// The `Host` header the pooled client would add when the request has none: the target's address,
/// without the port when it is 80.
pub(crate) fn host_for(target: SocketAddr) -> HeaderValue {
    let text = match (target.port(), target) {
        (80, SocketAddr::V4(a)) => a.ip().to_string(),
        (80, SocketAddr::V6(a)) => format!("[{}]", a.ip()),
        _ => target.to_string(),
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// Sets the `Host` header from `target` if `req` has none.
pub(crate) fn ensure_host(headers: &mut http::HeaderMap, target: SocketAddr) {
    if !headers.contains_key(HOST) {
        headers.insert(HOST, host_for(target));
    }
}

/// A request that failed after it was written; reads like the pooled client's error.
#[derive(Debug)]
pub(crate) struct SendFailed(hyper::Error);

impl fmt::Display for SendFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client error (SendRequest)")
    }
}

impl StdError for SendFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_like_the_pooled_client() {
        assert_eq!(host_for(([127, 0, 0, 1], 8080).into()), "127.0.0.1:8080");
        assert_eq!(host_for(([127, 0, 0, 1], 80).into()), "127.0.0.1");
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(host_for(v6), "[::1]");
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        assert_eq!(host_for(v6), "[::1]:81");
    }

    #[test]
    fn origin_form_keeps_the_query() {
        assert_eq!(origin_form(PathAndQuery::from_static("/")), "/");
        assert_eq!(
            origin_form(PathAndQuery::from_static("/a?b=1")).to_string(),
            "/a?b=1"
        );
    }
}
