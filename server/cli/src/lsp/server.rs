//! The `LanguageServer` impl: thin, it keeps the daemon's state and delegates to `handlers`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lane_api::Backend;
use lane_core::manifest::BackendKind;
use serde_json::Value;
use tokio::sync::Notify;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{
    DidChangeWorkspaceFoldersParams, ExecuteCommandOptions, ExecuteCommandParams, InitializeParams,
    InitializeResult, InitializedParams, MessageType, ProgressToken, ServerCapabilities,
    ServerInfo, SetTraceParams, WorkDoneProgressCancelParams, WorkspaceFoldersServerCapabilities,
    WorkspaceServerCapabilities,
};
use tower_lsp_server::{Client, LanguageServer};

use super::ext::Command as _;
use super::log::LogHandle;
use super::watch::{self, Pusher, Wake};
use super::{ext, handlers, keeper, to_proto, uri};
use crate::requests;

/// The daemon's state. Cheap to share: handlers get `&Lsp`.
pub struct Lsp {
    pub client: Client,
    /// `--backend`, when given; else the workspace's `lane.toml` chooses.
    backend_flag: Option<String>,
    /// The backend, opened once the folders are known (after `initialize` has answered, so the
    /// IDE does not wait for git) from the workspace folders' `lane.toml` (or the flag):
    /// one that starts the local agent when needed, like every CLI command, and the same one
    /// never starting anything, for the status pusher (a `lane down` stays down until the
    /// developer asks for something). A backend that cannot be opened is held as
    /// `lane_backend::Unopened`, so every call reports why.
    backends: tokio::sync::OnceCell<(Arc<dyn Backend>, Arc<dyn Backend>)>,
    /// The folder that chose the backend; the developer's identity is read in its repository.
    home: OnceLock<PathBuf>,
    pub folders: Arc<Mutex<Vec<PathBuf>>>,
    pusher: OnceLock<Pusher>,
    /// Cancel signals of running deploys, by their progress token.
    pub cancels: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    /// Whether the client accepts `window/workDoneProgress/create`.
    pub progress_supported: AtomicBool,
    /// Whether a failed command is also shown with `window/showMessage` (initialization option
    /// `showErrors`, default true; a client that shows the error it answers turns it off).
    show_errors: AtomicBool,
    /// Failed deploys, shown in the status until the next deploy of the service into the lane.
    pub failures: watch::Failures,
    pub next_token: AtomicU64,
    log: LogHandle,
}

/// The key of a progress token in [`Lsp::cancels`].
pub fn token_key(token: &ProgressToken) -> String {
    serde_json::to_string(token).unwrap_or_default()
}

impl Lsp {
    pub fn new(client: Client, backend_flag: Option<String>, log: LogHandle) -> Self {
        Lsp {
            client,
            backend_flag,
            backends: tokio::sync::OnceCell::new(),
            home: OnceLock::new(),
            folders: Arc::new(Mutex::new(Vec::new())),
            pusher: OnceLock::new(),
            cancels: Arc::new(Mutex::new(HashMap::new())),
            progress_supported: AtomicBool::new(false),
            show_errors: AtomicBool::new(true),
            failures: Arc::default(),
            next_token: AtomicU64::new(1),
            log,
        }
    }

    /// The backend commands go through.
    pub async fn backend(&self) -> Arc<dyn Backend> {
        self.backends().await.0
    }

    /// The backends the folders' `lane.toml` (or the flag) name, opened on first use; git runs
    /// off the async threads. Requests that come while they are being opened wait for them.
    async fn backends(&self) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        self.backends
            .get_or_init(|| async {
                let flag = self.backend_flag.clone();
                let folders = self.folders();
                let opened = requests::blocking(move || {
                    requests::backends_for_folders(flag.as_deref(), &folders)
                })
                .await;
                match opened {
                    Ok((home, backend, quiet)) => {
                        let _ = self.home.set(home);
                        tracing::info!(backend = backend.name(), "backend chosen");
                        (backend, quiet)
                    }
                    Err(e) => requests::unopened(BackendKind::Local, e),
                }
            })
            .await
            .clone()
    }

    /// With a backend that runs versions under the local agent (local, consul), starts the
    /// keeper that restarts the agent when it dies.
    fn keep_agent(&self, backend: &str, pusher: &Pusher) {
        if !matches!(backend, "local" | "consul") {
            return;
        }
        let opened = requests::open_options().and_then(|o| {
            let dir = lane_local::default_state_dir()?;
            Ok((o.exe, dir))
        });
        match opened {
            Ok((exe, dir)) => keeper::start(
                self.client.clone(),
                pusher.clone(),
                lane_local::StateDir::new(dir),
                exe,
            ),
            Err(e) => tracing::warn!("the lane agent is not restarted when it dies: {e}"),
        }
    }

    /// The developer as the workspace's repository knows them (read off the async threads).
    pub async fn owner(&self) -> String {
        let home = self
            .home
            .get()
            .cloned()
            .or_else(|| self.folders().first().cloned())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        requests::owner_in(home).await
    }

    pub fn folders(&self) -> Vec<PathBuf> {
        self.folders.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Asks the status pusher to look again (after a command changed something).
    pub fn refresh(&self) {
        if let Some(p) = self.pusher.get() {
            p.wake(Wake::Refresh);
        }
    }

    /// `lane/status`. Backend errors are part of the status (`backendError`), not JSON-RPC errors:
    /// the status bar shows them.
    pub async fn status(&self) -> Result<ext::LaneStatus> {
        let now = lane_local::now_secs();
        if let Some(st) = self.pusher.get().and_then(|p| p.fresh(now)) {
            return Ok(st);
        }
        Ok(watch::status(
            self.backend().await.as_ref(),
            &self.folders(),
            &self.failures,
        )
        .await)
    }

    /// `lane/history`: the lane's history from the backend; a bad lane id is invalid params, a
    /// lane without history (or a backend that keeps none) a lane error saying so.
    pub async fn history(&self, params: ext::HistoryParams) -> Result<Vec<ext::HistoryEntryInfo>> {
        let id: lane_core::LaneId = params.lane.parse().map_err(|e: lane_core::IdError| {
            crate::lsp::to_proto::rpc_error(&lane_api::BackendError::invalid(e.to_string()))
        })?;
        let entries = self
            .backend()
            .await
            .history(&id)
            .await
            .map_err(|e| crate::lsp::to_proto::rpc_error(&e))?;
        Ok(entries
            .into_iter()
            .map(|e| ext::HistoryEntryInfo {
                at: e.at,
                lane: e.lane.to_string(),
                event: serde_json::to_value(e.event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                owner: e.owner,
                actor: e.actor,
                service: e.service.map(|s| s.to_string()),
                reason: e.reason,
            })
            .collect())
    }

    /// `window/workDoneProgress/cancel`: cancels the deploy reporting under that token.
    pub async fn cancel_progress(&self, params: WorkDoneProgressCancelParams) {
        let key = token_key(&params.token);
        let cancel = self.cancels.lock().ok().and_then(|c| c.get(&key).cloned());
        match cancel {
            Some(c) => {
                tracing::info!("cancelling the operation reporting under {key}");
                c.notify_one();
            }
            None => tracing::debug!("no running operation reports under {key}"),
        }
    }

    /// Answers a malformed request that the stdin guard let through for its id.
    pub async fn invalid_request(&self, params: Value) -> Result<()> {
        Err(tower_lsp_server::jsonrpc::Error {
            code: tower_lsp_server::jsonrpc::ErrorCode::InvalidRequest,
            message: params["reason"]
                .as_str()
                .unwrap_or("invalid request")
                .to_owned()
                .into(),
            data: None,
        })
    }

    /// `$/setTrace`.
    pub async fn set_trace(&self, params: SetTraceParams) {
        self.log.set_trace(params.value);
    }
}

/// The workspace folders' paths (percent escapes decoded; URIs that are not local files skipped).
fn folder_paths(params: &InitializeParams) -> Vec<PathBuf> {
    if let Some(folders) = &params.workspace_folders {
        return folders
            .iter()
            .filter_map(|f| uri::file_path(&f.uri))
            .collect();
    }
    #[allow(deprecated)]
    let root = params.root_uri.as_ref().and_then(uri::file_path);
    root.into_iter().collect()
}

impl LanguageServer for Lsp {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        if let Some(trace) = params.trace {
            self.log.set_trace(trace);
        }
        let supported = params
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
        self.progress_supported.store(supported, Ordering::Relaxed);
        let show_errors = params
            .initialization_options
            .as_ref()
            .and_then(|o| o.get("showErrors"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        self.show_errors.store(show_errors, Ordering::Relaxed);
        let folders = folder_paths(&params);
        if let Ok(mut f) = self.folders.lock() {
            *f = folders;
        }
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "lane".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: ext::COMMANDS.iter().map(|c| (*c).to_owned()).collect(),
                    ..Default::default()
                }),
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                        supported: Some(true),
                        change_notifications: Some(tower_lsp_server::ls_types::OneOf::Left(true)),
                    }),
                    file_operations: None,
                }),
                experimental: Some(serde_json::json!({
                    "laneProtocolVersion": ext::PROTOCOL_VERSION,
                })),
                ..ServerCapabilities::default()
            },
            ..InitializeResult::default()
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.log.connect(self.client.clone());
        // The folders are known: open the backend their lane.toml names (requests that come
        // meanwhile wait for it).
        let (_, quiet) = self.backends().await;
        let quiet_name = quiet.name();
        let pusher = watch::start(
            self.client.clone(),
            quiet,
            self.folders.clone(),
            self.failures.clone(),
        );
        pusher.wake(Wake::Folders);
        self.keep_agent(quiet_name, &pusher);
        let _ = self.pusher.set(pusher);
        tracing::info!(folders = ?self.folders(), "lane lsp initialized");
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        if let Ok(mut folders) = self.folders.lock() {
            for removed in &params.event.removed {
                if let Some(p) = uri::file_path(&removed.uri) {
                    folders.retain(|f| *f != p);
                }
            }
            for added in &params.event.added {
                if let Some(p) = uri::file_path(&added.uri) {
                    folders.push(p);
                }
            }
        }
        if let Some(p) = self.pusher.get() {
            p.wake(Wake::Folders);
        }
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let command = params.command.clone();
        match handlers::execute(self, params).await {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                // Logged once: a deploy logs its own outcome with its stages.
                if e.code != lane_api::ErrorCode::Cancelled
                    && command != ext::DeployCurrentBranch::NAME
                {
                    tracing::warn!("{command} failed: {}", e.message);
                }
                if e.code != lane_api::ErrorCode::Cancelled
                    && self.show_errors.load(Ordering::Relaxed)
                {
                    let text = match &e.help {
                        Some(help) => format!("lane: {}\nhelp: {help}", e.message),
                        None => format!("lane: {}", e.message),
                    };
                    self.client.show_message(MessageType::ERROR, text).await;
                }
                Err(to_proto::rpc_error(&e))
            }
        }
    }
}
