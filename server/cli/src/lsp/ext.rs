//! Every custom part of the `lane lsp` protocol, in one place: the custom request and
//! notification (an empty enum each, with its `METHOD`), the `workspace/executeCommand` commands
//! with their argument and result types, and the JSON-RPC error data.
//!
//! The VS Code extension mirrors this module once (`vscode-extension/src/lsp_ext.ts`);
//! `docs/protocol.md` documents it, and a test fails when a method, command or type here is
//! missing from that doc. `lane lsp --describe` prints [`describe`] for the extension's drift test.
//!
//! Wire rules: field names are camelCase; optional fields are always present (`null` when absent),
//! so a client can compare shapes without knowing which fields are optional.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_lsp_server::ls_types::notification::Notification;
use tower_lsp_server::ls_types::request::Request;

/// Bumped when a method, command or shape changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 2;

/// JSON-RPC error code of a lane error (not found, conflict, build failed, …); `data` is an
/// [`ErrorInfo`] with the precise code and help.
pub const LANE_ERROR: i64 = -32001;

// ---------------------------------------------------------------------------------------------
// Requests and notifications

/// `lane/status` (client → server request, no params): the status the status bar shows.
pub enum StatusRequest {}

impl Request for StatusRequest {
    type Params = ();
    type Result = LaneStatus;
    const METHOD: &'static str = "lane/status";
}

/// `lane/statusChanged` (server → client notification): pushed whenever what `lane/status` returns
/// changes (branch or commit, `lane.toml`, deploys, health, switches, expiry). Debounced.
pub enum StatusChanged {}

impl Notification for StatusChanged {
    type Params = LaneStatus;
    const METHOD: &'static str = "lane/statusChanged";
}

/// `lane/agentRestarted` (server → client notification): the local agent died without stopping
/// cleanly (killed, crashed) while it had lanes or instances to run, and the daemon started it
/// again at once (or could not: `error`). The status bar shows `message`.
pub enum AgentRestarted {}

impl Notification for AgentRestarted {
    type Params = AgentRestartInfo;
    const METHOD: &'static str = "lane/agentRestarted";
}

/// A restart of the local agent by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRestartInfo {
    /// What the status bar shows: `lane agent restarted (was killed or crashed; back in 85 ms)`.
    pub message: String,
    /// Why it was restarted: `died` (it ended without stopping cleanly).
    pub reason: String,
    /// From when the daemon saw the agent gone to when the new one answered, in milliseconds.
    pub down_ms: u64,
    /// How many times this daemon has restarted the agent.
    pub restarts: u32,
    /// Why the agent could not be started again; null when it was.
    pub error: Option<String>,
}

/// `lane/history` (client → server request): every change to a lane, oldest first, kept after the
/// lane is deleted for a while (the local backend's `LANE_HISTORY_KEEP`).
pub enum HistoryRequest {}

impl Request for HistoryRequest {
    type Params = HistoryParams;
    type Result = Vec<HistoryEntryInfo>;
    const METHOD: &'static str = "lane/history";
}

// ---------------------------------------------------------------------------------------------
// Commands (`workspace/executeCommand`; `arguments` is `[args]`, or `[]` when args are optional)

/// A command of `workspace/executeCommand`.
pub trait Command {
    const NAME: &'static str;
    /// The type name of its one argument (see [`Shape`]).
    const ARGS: &'static str;
    /// The type name of its result.
    const RESULT: &'static str;
    /// Whether it reports work-done progress and honours `window/workDoneProgress/cancel`.
    const PROGRESS: bool = false;
    type Args: for<'de> Deserialize<'de>;
    type Result: Serialize;
}

macro_rules! command {
    ($(#[$doc:meta])* $name:ident = $cmd:literal, $args:ident -> $result:ty, $result_name:literal $(, progress = $p:literal)?) => {
        $(#[$doc])*
        pub enum $name {}
        impl Command for $name {
            const NAME: &'static str = $cmd;
            const ARGS: &'static str = stringify!($args);
            const RESULT: &'static str = $result_name;
            $(const PROGRESS: bool = $p;)?
            type Args = $args;
            type Result = $result;
        }
    };
}

command!(
    /// `lane.status`: same as `lane/status`.
    StatusCommand = "lane.status", NoArgs -> LaneStatus, "LaneStatus"
);
command!(
    /// `lane.deployCurrentBranch`: build the current branch of a workspace folder and deploy it into
    /// a lane (created if missing), waiting until healthy. Reports progress; cancellable.
    DeployCurrentBranch = "lane.deployCurrentBranch", DeployArgs -> DeployResult, "DeployResult",
    progress = true
);
command!(
    /// `lane.switchTraffic`: choose the lane the developer's own requests enter (`baseline` = off).
    SwitchTraffic = "lane.switchTraffic", SwitchArgs -> SwitchResult, "SwitchResult"
);
command!(
    /// `lane.list`: every lane with its services.
    ListLanes = "lane.list", NoArgs -> Vec<LaneInfo>, "LaneInfo[]"
);
command!(
    /// `lane.create`: create a lane owned by the developer.
    CreateLane = "lane.create", CreateArgs -> LaneInfo, "LaneInfo"
);
command!(
    /// `lane.delete`: delete a lane with everything it owns.
    DeleteLane = "lane.delete", DeleteArgs -> DeleteResult, "DeleteResult"
);
command!(
    /// `lane.extend`: give a lane more time.
    ExtendLane = "lane.extend", ExtendArgs -> LaneInfo, "LaneInfo"
);
command!(
    /// `lane.assign`: move a personal version from one lane to another.
    AssignService = "lane.assign", AssignArgs -> AssignResult, "AssignResult"
);

command!(
    /// `lane.data.ls`: what each lane owns of its data sources, with sizes and quotas (the rows of
    /// `lane data ls --json`).
    DataLs = "lane.data.ls", DataLsArgs -> Vec<DataInfo>, "DataInfo[]"
);
command!(
    /// `lane.data.export`: a lane's data (or one binding's) to a lane data file, as
    /// `lane data export`. Reports progress; cancellable.
    DataExport = "lane.data.export", DataExportArgs -> DataTransferResult, "DataTransferResult",
    progress = true
);
command!(
    /// `lane.data.import`: replace a lane's data (or one binding's) with a lane data file,
    /// atomically, as `lane data import`. Reports progress; cancellable.
    DataImport = "lane.data.import", DataImportArgs -> DataTransferResult, "DataTransferResult",
    progress = true
);
command!(
    /// `lane.data.backup`: export a lane's data to a new backup under the state dir, as
    /// `lane data backup`. Reports progress; cancellable.
    DataBackup = "lane.data.backup", DataBackupArgs -> DataTransferResult, "DataTransferResult",
    progress = true
);
command!(
    /// `lane.data.backups`: the backups of a lane (of every lane), oldest first.
    DataBackups = "lane.data.backups", DataBackupsArgs -> Vec<DataBackupInfo>, "DataBackupInfo[]"
);
command!(
    /// `lane.data.restore`: import a backup (the newest by default) into its lane, as
    /// `lane data restore`. Reports progress; cancellable.
    DataRestore = "lane.data.restore", DataRestoreArgs -> DataTransferResult, "DataTransferResult",
    progress = true
);

/// Every command, as advertised in `executeCommandProvider`.
pub const COMMANDS: &[&str] = &[
    StatusCommand::NAME,
    DeployCurrentBranch::NAME,
    SwitchTraffic::NAME,
    ListLanes::NAME,
    CreateLane::NAME,
    DeleteLane::NAME,
    ExtendLane::NAME,
    AssignService::NAME,
    DataLs::NAME,
    DataExport::NAME,
    DataImport::NAME,
    DataBackup::NAME,
    DataBackups::NAME,
    DataRestore::NAME,
];

// ---------------------------------------------------------------------------------------------
// Shapes

/// The status of the workspace and of every lane: what the status bar and the lanes view render.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneStatus {
    /// One entry per workspace folder that has a `lane.toml` (a service repo).
    pub workspaces: Vec<WorkspaceInfo>,
    /// `local`, `consul` or `kubernetes`.
    pub backend: String,
    /// Set when the backend could not be asked (e.g. the agent is not running); lanes are then empty.
    pub backend_error: Option<ErrorInfo>,
    /// The lane the developer's own requests enter, or `baseline`.
    pub active_lane: String,
    /// The header that carries the lane id, e.g. `x-lane`.
    pub lane_header: String,
    /// The router's address, e.g. `127.0.0.1:4080`.
    pub router: Option<String>,
    pub lanes: Vec<LaneInfo>,
    /// Baseline instances.
    pub baseline: Vec<ServiceInfo>,
    /// Healthy instances of the active lane (of baseline when the active lane is `baseline`).
    pub healthy: u32,
    /// All instances of the active lane (of baseline when the active lane is `baseline`).
    pub total: u32,
    /// The backend's revision: an opaque token that changes with every backend change.
    pub revision: String,
    /// The deploys of this daemon that failed, one per service and lane, each kept until the next
    /// deploy of that service into that lane starts.
    pub deploy_failures: Vec<DeployFailure>,
    /// Each baseline service that follows production: its commit, production's, and any drift.
    pub baseline_sync: Vec<BaselineSyncInfo>,
}

/// A baseline service that follows production (`follow` in `lane-workspace.toml`, or the
/// Kubernetes operator's production namespace): what it runs against what production runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineSyncInfo {
    /// `<app>.<proc>`.
    pub service: String,
    /// What is followed: `origin/main`, `refs/tags/v* (v1.10.0)`, `namespace prod`.
    pub follows: String,
    /// Production's version (a commit, an image); null when it cannot be read.
    pub production: Option<String>,
    /// The version baseline runs; null when it runs nothing yet.
    pub running: Option<String>,
    /// `in_sync`, `behind`, `build_failed`, `unhealthy` or `unknown`.
    pub drift: String,
    /// Why, when not in sync (a failed build's last lines, …).
    pub reason: Option<String>,
    /// Epoch seconds of the last time baseline was brought to (or found at) production's version.
    pub last_sync: Option<u64>,
}

/// A deploy that failed (not cancelled): what the lanes view shows on the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployFailure {
    /// `<app>.<proc>`.
    pub service: String,
    pub lane: String,
    pub branch: String,
    pub commit: String,
    pub error: ErrorInfo,
    /// Seconds since the epoch.
    pub at: u64,
}

/// A workspace folder with a `lane.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceInfo {
    /// The folder's path.
    pub folder: String,
    /// `<app>.<proc>` from `lane.toml`; null when it does not parse (see `error`).
    pub service: Option<String>,
    /// `http` or `grpc`.
    pub protocol: Option<String>,
    /// The current branch (`HEAD` when detached); null outside a git repository.
    pub branch: Option<String>,
    pub commit: Option<String>,
    /// Why `lane.toml` or git could not be read.
    pub error: Option<String>,
    /// The `Host` the router serves this service under: `<proc>.<app>.localhost:<port>`.
    pub host: Option<String>,
    /// The router URL of this service: `http://<proc>.<app>.localhost:<port>/`.
    pub url: Option<String>,
}

/// A lane with its services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneInfo {
    pub id: String,
    pub parent: Option<String>,
    pub owner: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// Seconds left when this status was made.
    pub expires_in_secs: u64,
    /// The lane, its parent, …: where its requests fall back to before baseline.
    pub chain: Vec<String>,
    pub services: Vec<ServiceInfo>,
    /// Set when the lane's branches are all merged: it ends with them (see [`MergedInfo`]).
    pub merged: Option<MergedInfo>,
}

/// A lane whose work is merged into what baseline follows, and when it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergedInfo {
    /// Seconds since the epoch when the backend found it merged.
    pub since: u64,
    /// Seconds since the epoch when it is reclaimed; `null` once `lane extend` kept it (it lives
    /// until its TTL).
    pub reclaim_at: Option<u64>,
    /// The ref its branches were merged into (`main`, `origin/main`).
    pub target: String,
    /// Each branch and how it was merged.
    pub reason: String,
}

/// One instance of a service (a personal version in a lane, or a baseline version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    /// `<app>.<proc>`.
    pub service: String,
    /// The lane id, or `baseline`.
    pub lane: String,
    /// `<branch>@<short commit>`.
    pub version: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub owner: Option<String>,
    /// `starting`, `healthy`, `unhealthy`, `crashed` or `stopped`.
    pub state: String,
    /// Where it listens, e.g. `127.0.0.1:41003`.
    pub addr: String,
    /// Requests the router sent it in the last minute.
    pub requests_per_minute: u64,
    /// Its output (stdout and stderr) as a file on this machine, when it runs as a local process.
    pub log: Option<String>,
}

/// A lane error, as the `data` of a JSON-RPC error and in [`LaneStatus::backend_error`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// `invalid_input`, `not_found`, `conflict`, `not_owner`, `build_failed`, `start_failed`,
    /// `unhealthy`, `cancelled`, `unavailable` or `internal`.
    pub code: String,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

/// Arguments of commands that take none (`arguments` may be omitted, `[]` or `[{}]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Arguments of `lane.deployCurrentBranch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeployArgs {
    /// The workspace folder to deploy; may be omitted when exactly one folder has a `lane.toml`.
    pub folder: Option<String>,
    /// The lane (created if missing); default: the active lane.
    pub lane: Option<String>,
    /// When the lane is created: its parent.
    pub parent: Option<String>,
    /// When the lane is created: its lifetime, like `2h` (default 24h).
    pub ttl: Option<String>,
    /// Deploy into someone else's lane.
    pub force: bool,
}

/// Result of `lane.deployCurrentBranch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployResult {
    pub service: String,
    pub lane: String,
    pub branch: String,
    pub commit: String,
    /// The instance's state, `healthy` on success.
    pub state: String,
    pub addr: String,
    /// The service's router URL (send the lane header to reach this version).
    pub url: Option<String>,
    /// The `Host` the router serves the service under: `<proc>.<app>.localhost:<port>`.
    pub host: Option<String>,
    /// The router's address, e.g. `127.0.0.1:4080`.
    pub router: Option<String>,
    /// The header that carries the lane id (send `<laneHeader>: <lane>` to reach this version).
    pub lane_header: String,
}

/// Arguments of `lane.switchTraffic`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwitchArgs {
    /// A lane id, or `baseline` to turn lane routing of your own requests off.
    pub lane: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchResult {
    pub active_lane: String,
}

/// Arguments of `lane.create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateArgs {
    pub lane: String,
    #[serde(default)]
    pub parent: Option<String>,
    /// Lifetime like `2h`, `30m`, `3d` (default 24h).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Arguments of `lane.delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteArgs {
    pub lane: String,
    /// Delete even if someone else owns it, or lanes are stacked on it.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResult {
    pub deleted: String,
    /// The services whose personal versions in the lane were stopped, sorted.
    pub stopped: Vec<String>,
    /// The lane the developer's requests enter now (`baseline` when the deleted lane was active).
    pub active_lane: String,
}

/// Arguments of `lane.extend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendArgs {
    pub lane: String,
    /// How much longer, like `2h` (default 24h).
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// Arguments of `lane.assign`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignArgs {
    /// `<app>.<proc>`.
    pub service: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignResult {
    pub service: String,
    pub from: String,
    pub to: String,
}

/// Arguments of `lane.data.ls` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DataLsArgs {
    /// Only this lane's data.
    pub lane: Option<String>,
    /// The workspace folder whose `lane.toml` declares the bindings (their servers are asked for
    /// sizes); default: every service folder of the workspace.
    pub folder: Option<String>,
}

/// One binding a lane holds data for: a row of `lane data ls --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataInfo {
    pub lane: String,
    /// The binding's name (`[data.<name>]`).
    pub binding: String,
    /// `mysql`, `redis`, `kafka` or `apollo`.
    pub kind: String,
    /// The lane's own copy: a database, a Redis index or key prefix (`lane:<id>:`), its topics,
    /// an Apollo cluster.
    pub target: String,
    /// `<n> bytes`, `<n> keys`, `<n> keys, ~<b> bytes (approximate)` (a key prefix), Kafka's
    /// partitions and records or `<n> items`; null when no `lane.toml` of the workspace declares
    /// the binding, or its server could not be asked.
    pub size: Option<String>,
    /// The sample quota (MySQL) or the pool (Redis); null when none applies or is known.
    pub quota: Option<String>,
}

/// Arguments of `lane.data.export`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataExportArgs {
    pub lane: String,
    /// Only this binding; default: every binding of a kind lane exports.
    #[serde(default)]
    pub binding: Option<String>,
    /// The file to write (a local path or `file://` URI); written through `<path>.partial`.
    pub path: String,
    /// The workspace folder whose `lane.toml` declares the bindings (their servers); default:
    /// every service folder of the workspace.
    #[serde(default)]
    pub folder: Option<String>,
}

/// Arguments of `lane.data.import`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataImportArgs {
    pub lane: String,
    /// Only this binding of the file.
    #[serde(default)]
    pub binding: Option<String>,
    /// The lane data file to read (a local path or `file://` URI).
    pub path: String,
    /// Replace the data of a lane another developer owns.
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub folder: Option<String>,
}

/// Arguments of `lane.data.backup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataBackupArgs {
    pub lane: String,
    #[serde(default)]
    pub folder: Option<String>,
}

/// Arguments of `lane.data.backups` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DataBackupsArgs {
    /// Only this lane's backups.
    pub lane: Option<String>,
}

/// Arguments of `lane.data.restore`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataRestoreArgs {
    pub lane: String,
    /// The backup's name (`20261130T124500Z`); default: the lane's newest.
    #[serde(default)]
    pub backup: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub folder: Option<String>,
}

/// What an export, import, backup or restore moved: `lane data export --json` and the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataTransferResult {
    pub lane: String,
    /// The file written or read.
    pub file: String,
    pub bindings: Vec<DataBindingReport>,
    /// Bytes of the file.
    pub bytes: u64,
    pub seconds: f64,
    /// Bindings left out (kinds not exported yet).
    pub notes: Vec<String>,
}

/// One binding an export or import moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataBindingReport {
    pub binding: String,
    pub kind: String,
    /// The lane's copy.
    pub target: String,
    /// Rows (MySQL), keys (Redis) or records (Kafka).
    pub items: u64,
    /// Tables, views and triggers (MySQL); topics (Kafka).
    pub objects: u64,
}

/// One backup of a lane: a row of `lane data backups --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataBackupInfo {
    pub lane: String,
    /// `YYYYMMDDTHHMMSSZ`, the argument `backup` of `lane.data.restore`.
    pub name: String,
    pub path: String,
    pub bytes: u64,
}

/// The params of `lane/history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParams {
    pub lane: String,
}

/// One change to a lane, as `lane history --json` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntryInfo {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub lane: String,
    /// `create`, `deploy`, `assign`, `switch`, `extend`, `delete` or `reclaim`.
    pub event: String,
    /// The lane's owner at the time.
    pub owner: String,
    /// Who asked; `null` for a reclaim and a switch.
    pub actor: Option<String>,
    pub service: Option<String>,
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// Description (`lane lsp --describe`)

/// The wire shape of a type: its JSON field names with a TypeScript-like type each. A unit test
/// checks that every shape lists exactly the fields serde writes.
pub trait Shape: Default + Serialize {
    const NAME: &'static str;
    const FIELDS: &'static [(&'static str, &'static str)];
}

macro_rules! shape {
    ($ty:ident { $($field:literal : $t:literal),* $(,)? }) => {
        impl Shape for $ty {
            const NAME: &'static str = stringify!($ty);
            const FIELDS: &'static [(&'static str, &'static str)] = &[$(($field, $t)),*];
        }
    };
}

shape!(LaneStatus {
    "workspaces": "WorkspaceInfo[]",
    "backend": "string",
    "backendError": "ErrorInfo | null",
    "activeLane": "string",
    "laneHeader": "string",
    "router": "string | null",
    "lanes": "LaneInfo[]",
    "baseline": "ServiceInfo[]",
    "healthy": "number",
    "total": "number",
    "revision": "string",
    "deployFailures": "DeployFailure[]",
    "baselineSync": "BaselineSyncInfo[]",
});
shape!(BaselineSyncInfo {
    "service": "string",
    "follows": "string",
    "production": "string | null",
    "running": "string | null",
    "drift": "\"in_sync\" | \"behind\" | \"build_failed\" | \"unhealthy\" | \"unknown\"",
    "reason": "string | null",
    "lastSync": "number | null",
});
shape!(DeployFailure {
    "service": "string",
    "lane": "string",
    "branch": "string",
    "commit": "string",
    "error": "ErrorInfo",
    "at": "number",
});
shape!(WorkspaceInfo {
    "folder": "string",
    "service": "string | null",
    "protocol": "\"http\" | \"grpc\" | null",
    "branch": "string | null",
    "commit": "string | null",
    "error": "string | null",
    "host": "string | null",
    "url": "string | null",
});
shape!(LaneInfo {
    "id": "string",
    "parent": "string | null",
    "owner": "string",
    "createdAt": "number",
    "expiresAt": "number",
    "expiresInSecs": "number",
    "chain": "string[]",
    "services": "ServiceInfo[]",
    "merged": "MergedInfo | null",
});
shape!(MergedInfo {
    "since": "number",
    "reclaimAt": "number | null",
    "target": "string",
    "reason": "string",
});
shape!(ServiceInfo {
    "service": "string",
    "lane": "string",
    "version": "string | null",
    "branch": "string | null",
    "commit": "string | null",
    "owner": "string | null",
    "state": "\"starting\" | \"healthy\" | \"unhealthy\" | \"crashed\" | \"stopped\"",
    "addr": "string",
    "requestsPerMinute": "number",
    "log": "string | null",
});
shape!(ErrorInfo {
    "code": "string",
    "message": "string",
    "help": "string | null",
});
shape!(NoArgs {});
shape!(DeployArgs {
    "folder": "string | null",
    "lane": "string | null",
    "parent": "string | null",
    "ttl": "string | null",
    "force": "boolean",
});
shape!(DeployResult {
    "service": "string",
    "lane": "string",
    "branch": "string",
    "commit": "string",
    "state": "string",
    "addr": "string",
    "url": "string | null",
    "host": "string | null",
    "router": "string | null",
    "laneHeader": "string",
});
shape!(SwitchArgs { "lane": "string" });
shape!(SwitchResult { "activeLane": "string" });
shape!(CreateArgs {
    "lane": "string",
    "parent": "string | null",
    "ttl": "string | null",
});
shape!(DeleteArgs { "lane": "string", "force": "boolean" });
shape!(DeleteResult {
    "deleted": "string",
    "stopped": "string[]",
    "activeLane": "string",
});
shape!(ExtendArgs {
    "lane": "string",
    "by": "string | null",
    "force": "boolean",
});
shape!(AssignArgs {
    "service": "string",
    "from": "string",
    "to": "string",
    "force": "boolean",
});
shape!(AssignResult {
    "service": "string",
    "from": "string",
    "to": "string",
});
shape!(AgentRestartInfo {
    "message": "string",
    "reason": "string",
    "downMs": "number",
    "restarts": "number",
    "error": "string | null",
});
shape!(DataLsArgs {
    "lane": "string | null",
    "folder": "string | null",
});
shape!(DataInfo {
    "lane": "string",
    "binding": "string",
    "kind": "\"mysql\" | \"redis\" | \"kafka\" | \"apollo\"",
    "target": "string",
    "size": "string | null",
    "quota": "string | null",
});
shape!(DataExportArgs {
    "lane": "string",
    "binding": "string | null",
    "path": "string",
    "folder": "string | null",
});
shape!(DataImportArgs {
    "lane": "string",
    "binding": "string | null",
    "path": "string",
    "force": "boolean",
    "folder": "string | null",
});
shape!(DataBackupArgs {
    "lane": "string",
    "folder": "string | null",
});
shape!(DataBackupsArgs { "lane": "string | null" });
shape!(DataRestoreArgs {
    "lane": "string",
    "backup": "string | null",
    "force": "boolean",
    "folder": "string | null",
});
shape!(DataTransferResult {
    "lane": "string",
    "file": "string",
    "bindings": "DataBindingReport[]",
    "bytes": "number",
    "seconds": "number",
    "notes": "string[]",
});
shape!(DataBindingReport {
    "binding": "string",
    "kind": "\"mysql\" | \"redis\" | \"kafka\" | \"apollo\"",
    "target": "string",
    "items": "number",
    "objects": "number",
});
shape!(DataBackupInfo {
    "lane": "string",
    "name": "string",
    "path": "string",
    "bytes": "number",
});
shape!(HistoryParams { "lane": "string" });
shape!(HistoryEntryInfo {
    "at": "number",
    "lane": "string",
    "event": "\"create\" | \"deploy\" | \"assign\" | \"switch\" | \"extend\" | \"delete\" | \"reclaim\"",
    "owner": "string",
    "actor": "string | null",
    "service": "string | null",
    "reason": "string",
});

fn shape<T: Shape>() -> (String, Value) {
    let fields: serde_json::Map<String, Value> = T::FIELDS
        .iter()
        .map(|(name, ty)| ((*name).to_owned(), Value::from(*ty)))
        .collect();
    (T::NAME.to_owned(), Value::Object(fields))
}

fn command<C: Command>() -> Value {
    json!({
        "command": C::NAME,
        "arguments": C::ARGS,
        "result": C::RESULT,
        "progress": C::PROGRESS,
    })
}

/// The whole custom protocol as JSON: what `lane lsp --describe` prints.
pub fn describe() -> Value {
    let types: serde_json::Map<String, Value> = [
        shape::<LaneStatus>(),
        shape::<WorkspaceInfo>(),
        shape::<LaneInfo>(),
        shape::<MergedInfo>(),
        shape::<ServiceInfo>(),
        shape::<ErrorInfo>(),
        shape::<DeployFailure>(),
        shape::<BaselineSyncInfo>(),
        shape::<NoArgs>(),
        shape::<DeployArgs>(),
        shape::<DeployResult>(),
        shape::<SwitchArgs>(),
        shape::<SwitchResult>(),
        shape::<CreateArgs>(),
        shape::<DeleteArgs>(),
        shape::<DeleteResult>(),
        shape::<ExtendArgs>(),
        shape::<AssignArgs>(),
        shape::<AssignResult>(),
        shape::<HistoryParams>(),
        shape::<HistoryEntryInfo>(),
        shape::<AgentRestartInfo>(),
        shape::<DataLsArgs>(),
        shape::<DataInfo>(),
        shape::<DataExportArgs>(),
        shape::<DataImportArgs>(),
        shape::<DataBackupArgs>(),
        shape::<DataBackupsArgs>(),
        shape::<DataRestoreArgs>(),
        shape::<DataTransferResult>(),
        shape::<DataBindingReport>(),
        shape::<DataBackupInfo>(),
    ]
    .into_iter()
    .collect();
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "requests": [
            { "method": StatusRequest::METHOD, "direction": "clientToServer", "params": null, "result": "LaneStatus" },
            { "method": HistoryRequest::METHOD, "direction": "clientToServer", "params": "HistoryParams", "result": "HistoryEntryInfo[]" },
        ],
        "notifications": [
            { "method": StatusChanged::METHOD, "direction": "serverToClient", "params": "LaneStatus" },
            { "method": AgentRestarted::METHOD, "direction": "serverToClient", "params": "AgentRestartInfo" },
        ],
        "commands": [
            command::<StatusCommand>(),
            command::<DeployCurrentBranch>(),
            command::<SwitchTraffic>(),
            command::<ListLanes>(),
            command::<CreateLane>(),
            command::<DeleteLane>(),
            command::<ExtendLane>(),
            command::<AssignService>(),
            command::<DataLs>(),
            command::<DataExport>(),
            command::<DataImport>(),
            command::<DataBackup>(),
            command::<DataBackups>(),
            command::<DataRestore>(),
        ],
        "errors": {
            "laneError": LANE_ERROR,
            "invalidParams": -32602,
            "requestCancelled": -32800,
            "data": "ErrorInfo",
        },
        "standard": [
            "initialize", "initialized", "shutdown", "exit", "workspace/executeCommand",
            "workspace/didChangeWorkspaceFolders", "window/workDoneProgress/create", "$/progress",
            "window/workDoneProgress/cancel", "$/cancelRequest", "window/showMessage",
            "window/logMessage", "$/setTrace",
        ],
        "types": types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<T: Shape>() -> (Vec<String>, Vec<String>) {
        let value = serde_json::to_value(T::default()).expect("wire types serialize");
        let got = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut want: Vec<String> = T::FIELDS.iter().map(|(n, _)| (*n).to_owned()).collect();
        want.sort();
        let mut got: Vec<String> = got;
        got.sort();
        (got, want)
    }

    macro_rules! check_shapes {
        ($($ty:ty),*) => {$(
            let (got, want) = keys::<$ty>();
            assert_eq!(got, want, "the shape of {} does not match its serde fields", <$ty>::NAME);
        )*};
    }

    #[test]
    fn shapes_list_exactly_the_serialized_fields() {
        check_shapes!(
            LaneStatus,
            WorkspaceInfo,
            LaneInfo,
            ServiceInfo,
            ErrorInfo,
            DeployFailure,
            BaselineSyncInfo,
            NoArgs,
            DeployArgs,
            DeployResult,
            SwitchArgs,
            SwitchResult,
            CreateArgs,
            DeleteArgs,
            DeleteResult,
            ExtendArgs,
            AssignArgs,
            AssignResult,
            HistoryParams,
            HistoryEntryInfo,
            DataLsArgs,
            DataInfo,
            DataExportArgs,
            DataImportArgs,
            DataBackupArgs,
            DataBackupsArgs,
            DataRestoreArgs,
            DataTransferResult,
            DataBindingReport,
            DataBackupInfo
        );
    }

    #[test]
    fn every_referenced_type_is_described() {
        let d = describe();
        let types = d["types"].as_object().expect("types is an object");
        for c in d["commands"].as_array().expect("commands is an array") {
            for key in ["arguments", "result"] {
                let name = c[key].as_str().expect("type names are strings");
                assert!(
                    types.contains_key(name.trim_end_matches("[]")),
                    "{name} is not described"
                );
            }
        }
        let names: Vec<&str> = d["commands"]
            .as_array()
            .expect("commands is an array")
            .iter()
            .filter_map(|c| c["command"].as_str())
            .collect();
        assert_eq!(names, COMMANDS);
    }

    #[test]
    fn the_protocol_doc_covers_every_name() {
        let doc = include_str!("../../../../docs/protocol.md");
        let d = describe();
        let mut missing: Vec<String> = Vec::new();
        for section in ["requests", "notifications"] {
            for m in d[section].as_array().expect("an array") {
                let method = m["method"].as_str().expect("a string");
                if !doc.contains(&format!("### `{method}`")) {
                    missing.push(format!("a `### `{method}`` section"));
                }
            }
        }
        for c in COMMANDS {
            if !doc.contains(&format!("| `{c}` |")) {
                missing.push(format!("{c} in the commands table"));
            }
        }
        // Each type has a section listing each of its fields.
        for (ty, fields) in d["types"].as_object().expect("an object") {
            let heading = format!("### {ty}\n");
            let Some(start) = doc.find(&heading) else {
                missing.push(format!("a `### {ty}` section"));
                continue;
            };
            let rest = &doc[start + heading.len()..];
            let section = &rest[..rest.find("\n#").unwrap_or(rest.len())];
            for field in fields.as_object().expect("an object").keys() {
                if !section.contains(&format!("| `{field}` |")) {
                    missing.push(format!("{ty}.{field}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/protocol.md lacks {missing:?}; document every method, command, type and field \
             of lsp/ext.rs there"
        );
    }
}
