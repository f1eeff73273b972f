//! The agent's control protocol: HTTP/1.1 over `agent.sock`, one `POST /<op>` per operation with a
//! JSON body. Replies are newline-delimited JSON [`Line`]s: progress and heartbeats for long
//! operations, then exactly one `ok` or `error`. A client that disconnects cancels its operation
//! (heartbeats make the agent notice within half a second).

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
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use lane_api::BackendError;
use lane_api::{
    AssignRequest, CreateLane, DeleteLane, DeployRequest, ExtendLane, InstanceView, Progress,
};

/// Largest request body the agent reads.
const MAX_BODY: usize = 4 << 20;
const HEARTBEAT: Duration = Duration::from_millis(500);

/// One line of a reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line<T> {
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

pub(crate) async fn serve(
    agent: Arc<Agent>,
    listener: UnixListener,
    shutdown: watch::Receiver<bool>,
) {
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
            _ = crate::agent::wait_true(shutdown.clone()) => return,
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let agent = agent.clone();
                async move { Ok::<_, Infallible>(handle(agent, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
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

async fn handle(agent: Arc<Agent>, req: Request<Incoming>) -> Response<ChannelBody> {
    if req.method() != Method::POST {
        let mut r = single::<()>(Err(BackendError::invalid("use POST")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let op = req.uri().path().trim_start_matches('/').to_owned();
    match op.as_str() {
        "status" => single(Ok(agent.status().await)),
        "create" => match body::<CreateLane>(req).await {
            Ok(r) => single(agent.create_lane(r).await),
            Err(e) => single::<()>(Err(e)),
        },
        "delete" => match body::<DeleteLane>(req).await {
            Ok(r) => single(agent.delete_lane(r).await),
            Err(e) => single::<()>(Err(e)),
        },
        "extend" => match body::<ExtendLane>(req).await {
            Ok(r) => single(agent.extend_lane(r).await),
            Err(e) => single::<()>(Err(e)),
        },
        "switch" => match body::<lane_core::LaneRef>(req).await {
            Ok(r) => single(agent.switch(r).await),
            Err(e) => single::<()>(Err(e)),
        },
        "assign" => match body::<AssignRequest>(req).await {
            Ok(r) => single(agent.assign(r).await),
            Err(e) => single::<()>(Err(e)),
        },
        "gc" => single(agent.gc().await),
        "wait" => match body::<WaitRequest>(req).await {
            Ok(r) => {
                let timeout = Duration::from_millis(r.timeout_ms.min(60_000));
                single(Ok(agent.wait_for_change(r.since, timeout).await))
            }
            Err(e) => single::<()>(Err(e)),
        },
        "shutdown" => {
            agent.request_shutdown();
            single(Ok(()))
        }
        "deploy" => match body::<DeployRequest>(req).await {
            Ok(r) => streaming(agent, vec![r], false),
            Err(e) => single::<()>(Err(e)),
        },
        "baseline" => match body::<Vec<DeployRequest>>(req).await {
            Ok(r) => streaming(agent, r, true),
            Err(e) => single::<()>(Err(e)),
        },
        other => {
            let mut r = single::<()>(Err(BackendError::invalid(format!(
                "unknown operation `{other}`; is the agent older than this `lane`? run `lane down`"
            ))));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Runs deploys, streaming their progress. `many` answers with a list (baseline up).
fn streaming(agent: Arc<Agent>, reqs: Vec<DeployRequest>, many: bool) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
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
        let mut done: Vec<InstanceView> = Vec::new();
        let mut failure = None;
        for req in reqs {
            match agent.deploy(req, ptx.clone()).await {
                Ok(v) => done.push(v),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(ptx);
        let _ = forward.await;
        let line = match (failure, many) {
            (Some(e), _) => encode(&Line::<()>::Error(e)),
            (None, true) => encode(&Line::Ok(done)),
            (None, false) => encode(&Line::Ok(done.pop())),
        };
        let _ = tx.send(line).await;
    });
    Response::new(ChannelBody(rx))
}
