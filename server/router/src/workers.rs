//! Router worker threads: each runs a current-thread tokio runtime and serves, start to end, the
//! connections the accept loop hands it (round-robin). A connection and both of its sides then stay
//! on one thread, as in nginx's workers: no work stealing, no cross-thread wake-up per request, and
//! the router's latency does not depend on what else the process's runtime is doing (the agent's
//! supervisor, health checks, control socket). Off by default (`LANE_ROUTER_WORKERS=0`: connections
//! are served on the caller's runtime): on the benchmark's loaded 2-core machine the workers showed
//! fewer futex wake-ups but no better tail, and one worker thread less throughput at 32
//! connections (docs/benchmarks.md, "wrk vs nginx").

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::{ConnectionSlot, Inner, serve_connection};

type Job = (std::net::TcpStream, watch::Receiver<bool>, ConnectionSlot);

pub(crate) struct Workers {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: usize,
}

impl Workers {
    /// Starts `n` worker threads; `None` for 0 (serve on the caller's runtime).
    pub(crate) fn start(n: usize, inner: &Arc<Inner>) -> std::io::Result<Option<Workers>> {
        if n == 0 {
            return Ok(None);
        }
        let mut queues = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("lane-router-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some((stream, stop, slot)) = rx.recv().await {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => {
                                    tokio::spawn(serve_connection(
                                        inner.clone(),
                                        stream,
                                        stop,
                                        slot,
                                    ));
                                }
                                Err(e) => tracing::warn!("router worker: {e}"),
                            }
                        }
                    });
                })?;
            queues.push(tx);
        }
        Ok(Some(Workers { queues, next: 0 }))
    }

    /// Hands a connection to the next worker.
    pub(crate) fn dispatch(
        &mut self,
        stream: TcpStream,
        stop: watch::Receiver<bool>,
        slot: ConnectionSlot,
    ) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("router: cannot hand a connection to a worker: {e}");
                return;
            }
        };
        let i = self.next % self.queues.len();
        self.next = self.next.wrapping_add(1);
        if self.queues[i].send((stream, stop, slot)).is_err() {
            tracing::warn!("router worker {i} is gone; connection dropped");
        }
    }
}
