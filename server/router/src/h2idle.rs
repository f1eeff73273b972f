//! The idle and head timeouts on h2c connections: how many of a connection's streams are open (a
//! request the router is serving, until its response body has been sent or dropped), and whether
//! one ever was, so that a connection with none open for [`crate::Limits::idle_timeout`] can be
//! closed (GOAWAY, then close), and one whose first request has not come whole within
//! [`crate::Limits::head_timeout`] of its start too, as on HTTP/1.x.
//!
//! hyper's HTTP/2 server has no idle timeout of its own, nor a timeout on a request's headers: its
//! keep-alive pings only find a peer that stopped answering, and a peer that answers pings but
//! sends nothing (or half a HEADERS block) would stay forever.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;

/// A connection's streams: how many are open, and whether one ever opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) open: usize,
    pub(crate) ever: bool,
}

/// The count of a connection's open streams.
#[derive(Clone)]
pub(crate) struct Streams(watch::Sender<Count>);

impl Streams {
    pub(crate) fn new() -> Self {
        Streams(watch::Sender::new(Count::default()))
    }

    /// A stream opens; it stays counted until the guard drops.
    pub(crate) fn open(&self) -> StreamGuard {
        self.0.send_modify(|c| {
            c.open += 1;
            c.ever = true;
        });
        StreamGuard(self.0.clone())
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Count> {
        self.0.subscribe()
    }
}

pub(crate) struct StreamGuard(watch::Sender<Count>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.open = c.open.saturating_sub(1));
    }
}

/// A response body that keeps its stream counted as open until it is done or dropped.
pub(crate) struct Tracked<B> {
    body: B,
    guard: Option<StreamGuard>,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, guard: StreamGuard) -> Self {
        Tracked {
            body,
            guard: Some(guard),
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let got = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(got, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard = None;
        }
        got
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
