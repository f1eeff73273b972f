//! One function per `workspace/executeCommand` command. Each parses its argument, calls the
//! backend (the same calls the CLI makes) and converts the answer with `to_proto`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lane_api::BackendError;
use lane_api::{self as api, AssignRequest, Cancel, Progress};
use lane_core::duration::parse_duration;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tower_lsp_server::Client;
use tower_lsp_server::ls_types::notification::Progress as ProgressNotification;
use tower_lsp_server::ls_types::{
    ExecuteCommandParams, MessageType, ProgressParams, ProgressParamsValue, ProgressToken,
    WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport,
};

use super::ext::{self, Command};
use super::server::{Lsp, token_key};
use super::{to_proto, uri, watch, workspace};
use crate::requests::{self, parse_lane, parse_lane_ref, parse_ttl};

type Result<T, E = BackendError> = std::result::Result<T, E>;

/// The shared helpers answer `anyhow` errors that wrap a [`BackendError`].
pub(super) fn backend_error(e: anyhow::Error) -> BackendError {
    requests::to_backend_error(e)
}

/// A command's one argument: `arguments[0]`, or `{}` when there is none.
fn args<T: DeserializeOwned>(command: &str, arguments: Vec<Value>) -> Result<T> {
    let value = arguments
        .into_iter()
        .next()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| Value::Object(Default::default()));
    serde_json::from_value(value).map_err(|e| {
        BackendError::invalid(format!("{command}: invalid arguments: {e}"))
            .with_help("see docs/protocol.md for the arguments of each command")
    })
}

fn to_value<T: Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| BackendError::internal(e.to_string()))
}

pub async fn execute(lsp: &Lsp, params: ExecuteCommandParams) -> Result<Value> {
    let name = params.command.as_str();
    let token = params.work_done_progress_params.work_done_token;
    let a = params.arguments;
    match name {
        ext::StatusCommand::NAME => {
            let _: ext::NoArgs = args(name, a)?;
            to_value(
                watch::status(lsp.backend().await.as_ref(), &lsp.folders(), &lsp.failures).await,
            )
        }
        ext::DeployCurrentBranch::NAME => to_value(deploy(lsp, args(name, a)?, token).await?),
        ext::SwitchTraffic::NAME => to_value(switch(lsp, args(name, a)?).await?),
        ext::ListLanes::NAME => {
            let _: ext::NoArgs = args(name, a)?;
            let st = lsp.backend().await.status().await?;
            to_value(to_proto::status(&st, Vec::new()).lanes)
        }
        ext::CreateLane::NAME => to_value(create(lsp, args(name, a)?).await?),
        ext::DeleteLane::NAME => to_value(delete(lsp, args(name, a)?).await?),
        ext::ExtendLane::NAME => to_value(extend(lsp, args(name, a)?).await?),
        ext::AssignService::NAME => to_value(assign(lsp, args(name, a)?).await?),
        ext::DataLs::NAME => to_value(data_ls(lsp, args(name, a)?).await?),
        ext::DataExport::NAME => to_value(super::data::export(lsp, args(name, a)?, token).await?),
        ext::DataImport::NAME => to_value(super::data::import(lsp, args(name, a)?, token).await?),
        ext::DataBackup::NAME => to_value(super::data::backup(lsp, args(name, a)?, token).await?),
        ext::DataBackups::NAME => to_value(super::data::backups(args(name, a)?).await?),
        ext::DataRestore::NAME => to_value(super::data::restore(lsp, args(name, a)?, token).await?),
        other => Err(BackendError::invalid(format!("unknown command `{other}`"))
            .with_help(format!("the commands are {}", ext::COMMANDS.join(", ")))),
    }
}

/// The lane as the status shows it right after a change (with its chain and services).
async fn lane_info(lsp: &Lsp, lane: &lane_core::Lane) -> ext::LaneInfo {
    match lsp.backend().await.status().await {
        Ok(st) => lane_api::find_lane(&st, &lane.id)
            .map(|lv| to_proto::lane(&st, lv))
            .unwrap_or_else(|| to_proto::bare_lane(lane, st.now)),
        Err(_) => to_proto::bare_lane(lane, lane_local::now_secs()),
    }
}

async fn switch(lsp: &Lsp, a: ext::SwitchArgs) -> Result<ext::SwitchResult> {
    let lane = parse_lane_ref(&a.lane).map_err(backend_error)?;
    lsp.backend().await.switch(lane.clone()).await?;
    lsp.refresh();
    Ok(ext::SwitchResult {
        active_lane: lane.to_string(),
    })
}

async fn create(lsp: &Lsp, a: ext::CreateArgs) -> Result<ext::LaneInfo> {
    let req = api::CreateLane {
        id: parse_lane(&a.lane).map_err(backend_error)?,
        parent: a
            .parent
            .as_deref()
            .map(parse_lane)
            .transpose()
            .map_err(backend_error)?,
        ttl_secs: parse_ttl(a.ttl.as_deref()).map_err(backend_error)?,
        owner: lsp.owner().await,
    };
    let lane = lsp.backend().await.create_lane(req).await?;
    lsp.refresh();
    Ok(lane_info(lsp, &lane).await)
}

async fn delete(lsp: &Lsp, a: ext::DeleteArgs) -> Result<ext::DeleteResult> {
    let id = parse_lane(&a.lane).map_err(backend_error)?;
    // What the deletion stops: the lane's personal versions, as the status showed them before.
    let mut stopped: Vec<String> = match lsp.backend().await.status().await {
        Ok(st) => lane_api::find_lane(&st, &id)
            .map(|lv| lv.lane.services.keys().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    stopped.sort();
    lsp.backend()
        .await
        .delete_lane(api::DeleteLane {
            id: id.clone(),
            actor: lsp.owner().await,
            force: a.force,
        })
        .await?;
    if let Ok(mut f) = lsp.failures.lock() {
        f.retain(|f| f.lane != id.as_str());
    }
    lsp.refresh();
    let active_lane = match lsp.backend().await.status().await {
        Ok(st) => st.active_lane.to_string(),
        Err(_) => lane_core::LaneRef::Baseline.to_string(),
    };
    Ok(ext::DeleteResult {
        deleted: id.to_string(),
        stopped,
        active_lane,
    })
}

async fn extend(lsp: &Lsp, a: ext::ExtendArgs) -> Result<ext::LaneInfo> {
    let by = parse_duration(a.by.as_deref().unwrap_or("24h"))
        .map_err(|e| BackendError::invalid(format!("by: {e}")))?;
    let lane = lsp
        .backend()
        .await
        .extend_lane(api::ExtendLane {
            id: parse_lane(&a.lane).map_err(backend_error)?,
            by_secs: by.as_secs(),
            actor: lsp.owner().await,
            force: a.force,
        })
        .await?;
    lsp.refresh();
    Ok(lane_info(lsp, &lane).await)
}

async fn assign(lsp: &Lsp, a: ext::AssignArgs) -> Result<ext::AssignResult> {
    let service = a
        .service
        .parse()
        .map_err(|e: lane_core::IdError| BackendError::invalid(e.to_string()))?;
    let from = parse_lane(&a.from).map_err(backend_error)?;
    let to = parse_lane(&a.to).map_err(backend_error)?;
    lsp.backend()
        .await
        .assign(AssignRequest {
            service,
            from: from.clone(),
            to: to.clone(),
            actor: lsp.owner().await,
            force: a.force,
        })
        .await?;
    lsp.refresh();
    Ok(ext::AssignResult {
        service: a.service,
        from: from.to_string(),
        to: to.to_string(),
    })
}

/// `lane.data.ls`: the rows of `lane data ls`, with sizes for the bindings the workspace's
/// `lane.toml`s (or the named folder's) declare.
async fn data_ls(lsp: &Lsp, a: ext::DataLsArgs) -> Result<Vec<ext::DataInfo>> {
    let lane = a
        .lane
        .as_deref()
        .map(parse_lane)
        .transpose()
        .map_err(backend_error)?;
    let folders = match a.folder {
        Some(f) => vec![uri::folder_argument(&f).ok_or_else(|| {
            BackendError::invalid(format!("folder: `{f}` is not a local path or file:// URI"))
        })?],
        None => workspace::read(lsp.folders()).await.services,
    };
    let mut declared: Vec<(lane_core::ServiceId, lane_core::data::DataSpec)> = Vec::new();
    for f in &folders {
        for (service, s) in crate::data_transfer::declared_in(f) {
            if !declared
                .iter()
                .any(|(_, o)| o.name == s.name && o.kind() == s.kind())
            {
                declared.push((service, s));
            }
        }
    }
    let backend = lsp.backend().await;
    let rows = crate::data::rows(backend.as_ref(), &declared)
        .await
        .map_err(backend_error)?;
    Ok(rows
        .into_iter()
        .filter(|r| lane.as_ref().is_none_or(|l| r.lane == l.as_str()))
        .map(|r| ext::DataInfo {
            lane: r.lane,
            binding: r.binding,
            kind: r.kind.to_string(),
            target: r.target,
            size: r.size,
            quota: r.quota,
        })
        .collect())
}

/// The folder to deploy: the one named (a path or a `file://` URI), else the only service folder
/// of the workspace.
async fn deploy_folder(lsp: &Lsp, folder: Option<String>) -> Result<PathBuf> {
    if let Some(f) = folder {
        return uri::folder_argument(&f).ok_or_else(|| {
            BackendError::invalid(format!("folder: `{f}` is not a local path or file:// URI"))
        });
    }
    let services = workspace::read(lsp.folders()).await.services;
    match services.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(
            BackendError::invalid("no workspace folder has a lane.toml").with_help(
                "open a service repository (with lane.toml at its root) or a monorepo with \
                 services in it, or pass `folder`",
            ),
        ),
        _ => Err(BackendError::invalid(
            "the workspace has several services (folders with a lane.toml); which one to deploy?",
        )
        .with_help("pass `folder` in the arguments of lane.deployCurrentBranch")),
    }
}

/// Work-done progress of one operation. Ends the progress (and forgets its cancel signal) when
/// dropped, so a request cancelled by `$/cancelRequest` still closes its progress.
pub(super) struct ProgressGuard {
    client: Client,
    token: Option<ProgressToken>,
    lsp_cancels: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>,
    /// The end message when the request is dropped without hearing the outcome.
    dropped: &'static str,
}

fn progress_params(token: ProgressToken, value: WorkDoneProgress) -> ProgressParams {
    ProgressParams {
        token,
        value: ProgressParamsValue::WorkDone(value),
    }
}

impl ProgressGuard {
    pub(super) async fn report(
        client: &Client,
        token: &Option<ProgressToken>,
        percent: u8,
        message: String,
    ) {
        if let Some(token) = token {
            let report = WorkDoneProgress::Report(WorkDoneProgressReport {
                cancellable: Some(true),
                message: Some(message),
                percentage: Some(u32::from(percent)),
            });
            client
                .send_notification::<ProgressNotification>(progress_params(token.clone(), report))
                .await;
        }
    }
}

impl ProgressGuard {
    /// Ends the progress with `message`.
    pub(super) async fn finish(mut self, message: String) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Ok(mut c) = self.lsp_cancels.lock() {
            c.remove(&token_key(&token));
        }
        let end = WorkDoneProgress::End(WorkDoneProgressEnd {
            message: Some(message),
        });
        self.client
            .send_notification::<ProgressNotification>(progress_params(token, end))
            .await;
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Ok(mut c) = self.lsp_cancels.lock() {
            c.remove(&token_key(&token));
        }
        let end = WorkDoneProgress::End(WorkDoneProgressEnd {
            message: Some(self.dropped.into()),
        });
        let client = self.client.clone();
        tokio::spawn(async move {
            client
                .send_notification::<ProgressNotification>(progress_params(token, end))
                .await;
        });
    }
}

/// Work-done progress for an operation of `kind`: the client's token, else one we create (when
/// the client supports that); the signal `window/workDoneProgress/cancel` fires; the guard that
/// ends the progress.
pub(super) async fn start_progress(
    lsp: &Lsp,
    token: Option<ProgressToken>,
    kind: &str,
    dropped: &'static str,
) -> (Option<ProgressToken>, Arc<Notify>, ProgressGuard) {
    let token = match token {
        Some(t) => Some(t),
        None if lsp.progress_supported.load(Ordering::Relaxed) => {
            let n = lsp.next_token.fetch_add(1, Ordering::Relaxed);
            let t = ProgressToken::String(format!("lane/{kind}/{n}"));
            match lsp.client.create_work_done_progress(t.clone()).await {
                Ok(()) => Some(t),
                Err(e) => {
                    tracing::debug!("the client refused a progress token: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let cancel = Arc::new(Notify::new());
    if let (Some(t), Ok(mut c)) = (&token, lsp.cancels.lock()) {
        c.insert(token_key(t), cancel.clone());
    }
    let guard = ProgressGuard {
        client: lsp.client.clone(),
        token: token.clone(),
        lsp_cancels: lsp.cancels.clone(),
        dropped,
    };
    (token, cancel, guard)
}

/// Sends the `begin` of a work-done progress.
pub(super) async fn begin_progress(lsp: &Lsp, token: &Option<ProgressToken>, title: String) {
    if let Some(t) = token {
        let begin = WorkDoneProgress::Begin(WorkDoneProgressBegin {
            title,
            cancellable: Some(true),
            message: Some("starting".into()),
            percentage: Some(0),
        });
        lsp.client
            .send_notification::<ProgressNotification>(progress_params(t.clone(), begin))
            .await;
    }
}

async fn deploy(
    lsp: &Lsp,
    a: ext::DeployArgs,
    token: Option<ProgressToken>,
) -> Result<ext::DeployResult> {
    let folder = deploy_folder(lsp, a.folder).await?;
    let req = requests::deploy_request(
        lsp.backend().await.as_ref(),
        &folder,
        a.lane,
        a.parent,
        a.ttl,
        a.force,
    )
    .await
    .map_err(backend_error)?;
    let (service, lane) = (req.manifest.service.clone(), req.lane.clone());
    let (branch, commit) = (req.source.branch.clone(), req.source.commit.clone());
    // This deploy replaces the last one's outcome.
    let (service_id, lane_id) = (service.to_string(), lane.to_string());
    if let Ok(mut f) = lsp.failures.lock() {
        f.retain(|f| f.service != service_id || f.lane != lane_id);
    }

    // The request was dropped without hearing the outcome: the backend rolls back a deploy not
    // yet live and completes one that is.
    let (token, cancel, guard) = start_progress(
        lsp,
        token,
        "deploy",
        "cancelled; a deploy that had not gone live is rolled back, one that had stays",
    )
    .await;
    let short = &commit[..commit.len().min(8)];
    lsp.client
        .log_message(
            MessageType::INFO,
            format!("[{service}] deploying {branch}@{short} into lane {lane}"),
        )
        .await;
    begin_progress(
        lsp,
        &token,
        format!("Deploying {service} ({branch}@{short}) into lane {lane}"),
    )
    .await;

    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<Progress>();
    let forward = {
        let client = lsp.client.clone();
        let token = token.clone();
        tokio::spawn(async move {
            while let Some(p) = progress_rx.recv().await {
                match p {
                    Progress::Stage {
                        service,
                        stage,
                        percent,
                        message,
                    } => {
                        let text = format!("{}: {message}", stage.as_str());
                        // Every stage also goes to the IDE's output (not only to a progress
                        // notification that disappears), with the build's and service's lines.
                        client
                            .log_message(MessageType::INFO, format!("[{service}] {text}"))
                            .await;
                        ProgressGuard::report(&client, &token, percent, text).await;
                    }
                    Progress::Log { service, line } => {
                        client
                            .log_message(MessageType::LOG, format!("[{service}] {line}"))
                            .await;
                    }
                }
            }
        })
    };
    let backend = lsp.backend().await;
    // The client's cancel is passed on; the backend answers how the deploy ended (rolled back
    // before it went live, or live).
    let stop = Cancel::new();
    let deploy = backend.deploy(req, progress_tx, stop.clone());
    tokio::pin!(deploy);
    let result = tokio::select! {
        r = &mut deploy => r,
        () = cancel.notified() => {
            stop.cancel();
            deploy.await
        }
    };
    // The sender is gone with the deploy future: the forwarder drains and stops, so every
    // report precedes the end.
    let _ = forward.await;
    lsp.refresh();
    let instance = match result {
        Ok(i) => i,
        Err(e) => {
            let message = match e.code {
                api::ErrorCode::Cancelled => e.message.clone(),
                _ => format!("failed: {}", e.message),
            };
            lsp.client
                .log_message(MessageType::INFO, format!("[{service}] deploy {message}"))
                .await;
            if e.code != api::ErrorCode::Cancelled
                && let Ok(mut f) = lsp.failures.lock()
            {
                f.push(ext::DeployFailure {
                    service: service_id,
                    lane: lane_id,
                    branch: branch.clone(),
                    commit: commit.clone(),
                    error: to_proto::error_info(&e),
                    at: lane_local::now_secs(),
                });
                lsp.refresh();
            }
            guard.finish(message).await;
            return Err(e);
        }
    };
    let message = format!(
        "{service} {branch}@{short} is {} in lane {lane}",
        instance.state.as_str()
    );
    let log = match &instance.placement {
        api::Placement::Process { log: Some(p), .. } => format!("; its output: {}", p.display()),
        _ => String::new(),
    };
    lsp.client
        .log_message(MessageType::INFO, format!("[{service}] {message}{log}"))
        .await;
    guard.finish(message).await;
    // What a request to this version needs: the router, the service's host there and the header.
    let (router, lane_header) = match lsp.backend().await.status().await {
        Ok(st) => (st.router, st.lane_header),
        Err(_) => (None, lane_router::DEFAULT_LANE_HEADER.as_str().to_owned()),
    };
    let (host, url) = to_proto::service_url(router.as_deref(), &service);
    Ok(ext::DeployResult {
        service: service.to_string(),
        lane: lane.to_string(),
        branch,
        commit,
        state: instance.state.as_str().to_owned(),
        addr: instance.placement.endpoint(),
        url,
        host,
        router,
        lane_header,
    })
}
