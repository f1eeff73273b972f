//! The agent's control protocol: HTTP/1.1 over `agent.sock`, one `POST /<op>` per operation with a
//! JSON body. Replies are newline-delimited JSON [`Line`]s: for long operations (deploy, baseline)
//! first `accepted` with the request's id, then progress and heartbeats; then exactly one `ok` or
//! `error`.
//!
//! Every request carries the client's protocol version in [`PROTOCOL_HEADER`] and every reply the
//! agent's; a request of another version is refused with an error naming both (the client checks
//! the reply's too, for agents older than the header). `POST /shutdown` is the exception, in both
//! directions and in every version, so that `lane down` stops any agent.
//!
//! Operations run in tasks of their own, not in the connection's: a client that disconnects
//! does not stop one half-way. It cancels a deploy that has not gone live yet (heartbeats make the
//! agent notice within half a second), as does `POST /cancel` with the request's id.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::agent::Agent;
use lane_api::BackendError;
use lane_api::{
    AssignRequest, CreateLane, DeleteLane, DeployRequest, ExtendLane, InstanceView, Progress,
};

/// The version of this protocol. Bump it with any change to a request or a reply (the ops, their
/// bodies, [`Line`]); agents before the header count as version 1.
pub const PROTOCOL: u32 = 2;
/// The header that carries [`PROTOCOL`] on every request and every reply.
pub const PROTOCOL_HEADER: &str = "lane-protocol";
/// The operation every version answers, whatever the client's version.
pub const SHUTDOWN: &str = "shutdown";

/// Largest request body the agent reads.
const MAX_BODY: usize = 4 << 20;
const HEARTBEAT: Duration = Duration::from_millis(500);

/// One line of a reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line<T> {
    /// The id of a streaming request, for `POST /cancel`.
    Accepted(String),
    Progress(Progress),
    Heartbeat,
    Ok(T),
    Error(BackendError),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WaitRequest {
    /// The generation the client knows; `None`: it knows none yet (answered at once).
    pub since: Option<u64>,
    pub timeout_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CancelRequest {
    /// The id the request's `accepted` line gave.
    pub request: String,
}

/// A peer's protocol version from its header: `None` when it sends none (version 1), `Some(Err)`
/// with the text when it is not a number.
pub fn protocol_of(headers: &http::HeaderMap) -> Option<Result<u32, String>> {
    let v = headers.get(PROTOCOL_HEADER)?;
    let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
    Some(text.trim().parse().map_err(|_| text))
}

/// The error for a client and an agent that speak different versions of this protocol.
pub fn version_mismatch(client: &str, agent: &str) -> BackendError {
    BackendError::unavailable(format!(
        "this lane speaks agent protocol {client} but the running lane agent speaks {agent}: \
         they come from different versions of lane"
    ))
    .with_help(
        "run `lane down` to stop the running agent and everything it runs (it works across \
         versions); the next command starts an agent of this version",
    )
}

/// A response body fed from a channel.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn encode<T: Serialize>(line: &Line<T>) -> Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_else(|e| {
        serde_json::to_vec(&Line::<()>::Error(BackendError::internal(format!(
            "cannot encode a reply: {e}"
        ))))
        .expect("a plain error always encodes")
    });
    v.push(b'\n');
    Bytes::from(v)
}

fn single<T: Serialize>(result: Result<T, BackendError>) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel(1);
    let line = match result {
        Ok(v) => encode(&Line::Ok(v)),
        Err(e) => encode(&Line::<()>::Error(e)),
    };
    let _ = tx.try_send(line);
    Response::new(ChannelBody(rx))
}

/// Serves the socket until shutdown; then lets each connection finish the request it is answering
/// (so that a client gets the outcome of an operation that ends as the agent stops) and returns
/// when every connection has closed.
pub(crate) async fn serve(
    agent: Arc<Agent>,
    listener: UnixListener,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::agent::wait_true(shutdown.clone()) => break,
        };
        // Forget the connections that have closed.
        while connections.try_join_next().is_some() {}
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let agent = agent.clone();
                async move {
                    let mut resp = handle(agent, req).await;
                    resp.headers_mut()
                        .insert(PROTOCOL_HEADER, http::HeaderValue::from(PROTOCOL));
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = crate::agent::wait_true(shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, BackendError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| BackendError::invalid(format!("cannot read the request: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| BackendError::invalid(format!("malformed request: {e}")))
}

/// Runs an operation in a task of its own and answers with its outcome; the operation goes on
/// to its end when the client disconnects (its connection's future is then dropped, not the task).
async fn detached<T, F>(op: F) -> Response<ChannelBody>
where
    T: Serialize + Send + 'static,
    F: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(op.await);
    });
    single(rx.await.unwrap_or_else(|_| {
        Err(BackendError::internal(
            "the operation ended without an answer",
        ))
    }))
}

/// Reads the body as `T` and runs `op` on it in a task of its own (see [`detached`]).
async fn run<Req, T, F, Fut>(
    agent: Arc<Agent>,
    req: Request<Incoming>,
    op: F,
) -> Response<ChannelBody>
where
    Req: DeserializeOwned,
    T: Serialize + Send + 'static,
    F: FnOnce(Arc<Agent>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>> + Send + 'static,
{
    match body::<Req>(req).await {
        Ok(r) => detached(op(agent, r)).await,
        Err(e) => single::<()>(Err(e)),
    }
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>) -> Response<ChannelBody> {
    if req.method() != Method::POST {
        let mut r = single::<()>(Err(BackendError::invalid("use POST")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let op = req.uri().path().trim_start_matches('/').to_owned();
    if op == SHUTDOWN {
        agent.request_shutdown();
        return single(Ok(()));
    }
    let client = match protocol_of(req.headers()) {
        Some(Ok(v)) if v == PROTOCOL => None,
        Some(Ok(v)) => Some(v.to_string()),
        Some(Err(text)) => Some(format!("`{text}`")),
        None => Some("1 (from before versioned agents)".to_owned()),
    };
    if let Some(client) = client {
        let mut r = single::<()>(Err(version_mismatch(&client, &PROTOCOL.to_string())));
        *r.status_mut() = StatusCode::CONFLICT;
        return r;
    }
    match op.as_str() {
        "status" => single(Ok(agent.status().await)),
        "create" => {
            run(agent, req, |a, r: CreateLane| async move {
                a.create_lane(r).await
            })
            .await
        }
        "delete" => {
            run(agent, req, |a, r: DeleteLane| async move {
                a.delete_lane(r).await
            })
            .await
        }
        "extend" => {
            run(agent, req, |a, r: ExtendLane| async move {
                a.extend_lane(r).await
            })
            .await
        }
        "switch" => {
            run(agent, req, |a, r: lane_core::LaneRef| async move {
                a.switch(r).await
            })
            .await
        }
        "assign" => {
            run(agent, req, |a, r: AssignRequest| async move {
                a.assign(r).await
            })
            .await
        }
        "gc" => run(agent, req, |a, (): ()| async move { a.gc().await }).await,
        "history" => {
            run(agent, req, |a, r: lane_core::LaneId| async move {
                a.history(&r).await
            })
            .await
        }
        "wait" => match body::<WaitRequest>(req).await {
            Ok(r) => {
                let timeout = Duration::from_millis(r.timeout_ms.min(60_000));
                single(Ok(agent.wait_for_change(r.since, timeout).await))
            }
            Err(e) => single::<()>(Err(e)),
        },
        "cancel" => match body::<CancelRequest>(req).await {
            Ok(r) => single(Ok(agent.cancel_request(&r.request))),
            Err(e) => single::<()>(Err(e)),
        },
        "deploy" => match body::<DeployRequest>(req).await {
            Ok(r) => streaming(agent, vec![r], false),
            Err(e) => single::<()>(Err(e)),
        },
        "baseline" => match body::<Vec<DeployRequest>>(req).await {
            Ok(r) => streaming(agent, r, true),
            Err(e) => single::<()>(Err(e)),
        },
        // `lane baseline sync`: fetch, check what production runs, roll forward.
        "baseline-sync" => stream_op(agent, |agent, ptx, cancel| async move {
            match agent
                .sync_followed(crate::agent::FollowTrigger::Asked, ptx, cancel)
                .await
            {
                Ok(v) => encode(&Line::Ok(v)),
                Err(e) => encode(&Line::<()>::Error(e)),
            }
        }),
        other => {
            let mut r = single::<()>(Err(BackendError::invalid(format!(
                "unknown operation `{other}`"
            ))));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Runs deploys, streaming their progress. `many` answers with a list (baseline up).
fn streaming(agent: Arc<Agent>, reqs: Vec<DeployRequest>, many: bool) -> Response<ChannelBody> {
    stream_op(agent, move |agent, ptx, cancel| async move {
        if many {
            match agent.baseline_up(reqs, ptx, cancel).await {
                Ok(done) => encode(&Line::Ok(done)),
                Err(e) => encode(&Line::<()>::Error(e)),
            }
        } else {
            let mut outcome: Result<Option<InstanceView>, BackendError> = Ok(None);
            if let Some(req) = reqs.into_iter().next() {
                outcome = agent.deploy(req, ptx, cancel).await.map(Some);
            }
            match outcome {
                Ok(v) => encode(&Line::Ok(v)),
                Err(e) => encode(&Line::<()>::Error(e)),
            }
        }
    })
}

/// Runs a long operation in a task of its own, streaming its progress (and heartbeats) and then
/// its outcome, the last line `op` makes. It can be cancelled by its request id.
fn stream_op<F, Fut>(agent: Arc<Agent>, op: F) -> Response<ChannelBody>
where
    F: FnOnce(Arc<Agent>, mpsc::Sender<Progress>, lane_api::Cancel) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Bytes> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (id, cancel) = agent.register_request();
    let _ = tx.try_send(encode(&Line::<()>::Accepted(id.clone())));
    tokio::spawn(async move {
        let (ptx, mut prx) = mpsc::channel::<Progress>(64);
        let out = tx.clone();
        let forward = tokio::spawn(async move {
            let mut beat = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    p = prx.recv() => match p {
                        Some(p) => if out.send(encode(&Line::<()>::Progress(p))).await.is_err() { return; },
                        None => return,
                    },
                    _ = beat.tick() => if out.send(encode(&Line::<()>::Heartbeat)).await.is_err() { return; },
                }
            }
        });
        // The progress channel closes when the client is gone: `forward` stops and drops `prx`.
        let line = op(agent.clone(), ptx, cancel).await;
        agent.forget_request(&id);
        let _ = forward.await;
        let _ = tx.send(line).await;
    });
    Response::new(ChannelBody(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions_are_read_from_the_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(protocol_of(&h), None);
        h.insert(PROTOCOL_HEADER, http::HeaderValue::from(PROTOCOL));
        assert_eq!(protocol_of(&h), Some(Ok(PROTOCOL)));
        h.insert(PROTOCOL_HEADER, http::HeaderValue::from_static("two"));
        assert_eq!(protocol_of(&h), Some(Err("two".to_owned())));
        let e = version_mismatch("7", "2");
        assert!(
            e.message.contains("protocol 7") && e.message.contains("speaks 2"),
            "{e}"
        );
        assert!(e.help.unwrap_or_default().contains("lane down"));
    }

    #[test]
    fn the_accepted_line_names_the_request() {
        let line = encode(&Line::<()>::Accepted("r7".into()));
        assert_eq!(&line[..], b"{\"accepted\":\"r7\"}\n");
    }
}
