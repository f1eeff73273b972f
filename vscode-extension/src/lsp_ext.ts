// The custom protocol of `lane lsp`: every method and command name and every type that crosses
// the wire, mirrored from the server's `server/cli/src/lsp/ext.rs`. This is the only file of the
// extension that knows them. The drift test (test/server/drift.test.ts) compares the names and the
// fields of every type with `lane lsp --describe`; docs/protocol.md documents them.
//
// Wire rules (from ext.rs): field names are camelCase; optional fields are always present, `null`
// when absent. No `vscode` import here: the tests load this module in plain node.

import { NotificationType, RequestType, RequestType0 } from "vscode-jsonrpc";

/** Bumped by the server when a method, command or shape changes incompatibly; the server also sends
 * it in `initialize` → `capabilities.experimental.laneProtocolVersion`. */
export const PROTOCOL_VERSION = 2;

/** The lane id that means "no lane": requests reach only baseline versions. */
export const BASELINE = "baseline";

// ---- requests and notifications ---------------------------------------------------------------

/** `lane/status` (client → server, no params): the status the status bar shows. */
export const status = new RequestType0<LaneStatus, void>("lane/status");

/** `lane/statusChanged` (server → client): pushed whenever what `lane/status` returns changes. */
export const statusChanged = new NotificationType<LaneStatus>("lane/statusChanged");

/** `lane/agentRestarted` (server → client): the local agent died (killed, crashed) and the server
 * started it again at once, or could not (`error`). */
export const agentRestarted = new NotificationType<AgentRestartInfo>("lane/agentRestarted");

/** `lane/history` (client → server): every change to a lane, oldest first. */
export const history = new RequestType<HistoryParams, HistoryEntryInfo[], void>("lane/history");

export const REQUESTS: readonly string[] = [status.method, history.method];
export const NOTIFICATIONS: readonly string[] = [statusChanged.method, agentRestarted.method];

// ---- workspace/executeCommand commands --------------------------------------------------------
// `arguments` is `[args]`, or `[]` for commands without arguments.

export interface CommandSpec<Args, Result> {
    readonly name: string;
    /** The type names of its argument and result, as `lane lsp --describe` spells them. */
    readonly argsType: string;
    readonly resultType: string;
    /** Whether it reports work-done progress and honours `window/workDoneProgress/cancel`. */
    readonly progress: boolean;
    /** Type markers only; never read at run time. */
    readonly _args?: Args;
    readonly _result?: Result;
}

function command<Args, Result>(
    name: string,
    argsType: string,
    resultType: string,
    progress = false,
): CommandSpec<Args, Result> {
    return { name, argsType, resultType, progress };
}

export const Commands = {
    status: command<NoArgs, LaneStatus>("lane.status", "NoArgs", "LaneStatus"),
    deployCurrentBranch: command<DeployArgs, DeployResult>("lane.deployCurrentBranch", "DeployArgs", "DeployResult", true),
    switchTraffic: command<SwitchArgs, SwitchResult>("lane.switchTraffic", "SwitchArgs", "SwitchResult"),
    list: command<NoArgs, LaneInfo[]>("lane.list", "NoArgs", "LaneInfo[]"),
    create: command<CreateArgs, LaneInfo>("lane.create", "CreateArgs", "LaneInfo"),
    delete: command<DeleteArgs, DeleteResult>("lane.delete", "DeleteArgs", "DeleteResult"),
    extend: command<ExtendArgs, LaneInfo>("lane.extend", "ExtendArgs", "LaneInfo"),
    assign: command<AssignArgs, AssignResult>("lane.assign", "AssignArgs", "AssignResult"),
    dataLs: command<DataLsArgs, DataInfo[]>("lane.data.ls", "DataLsArgs", "DataInfo[]"),
    dataExport: command<DataExportArgs, DataTransferResult>("lane.data.export", "DataExportArgs", "DataTransferResult", true),
    dataImport: command<DataImportArgs, DataTransferResult>("lane.data.import", "DataImportArgs", "DataTransferResult", true),
    dataBackup: command<DataBackupArgs, DataTransferResult>("lane.data.backup", "DataBackupArgs", "DataTransferResult", true),
    dataBackups: command<DataBackupsArgs, DataBackupInfo[]>("lane.data.backups", "DataBackupsArgs", "DataBackupInfo[]"),
    dataRestore: command<DataRestoreArgs, DataTransferResult>("lane.data.restore", "DataRestoreArgs", "DataTransferResult", true),
} as const;

export const COMMANDS: readonly string[] = Object.values(Commands).map((c) => c.name);

// ---- errors -----------------------------------------------------------------------------------

/** JSON-RPC error code of a lane error; `data` is an `ErrorInfo`. */
export const LANE_ERROR = -32001;
export const INVALID_PARAMS = -32602;
export const REQUEST_CANCELLED = -32800;

// ---- shapes -----------------------------------------------------------------------------------

export type InstanceState = "starting" | "healthy" | "unhealthy" | "crashed" | "stopped";

/** The status of the workspace and of every lane: what the status bar and the lanes view render. */
export interface LaneStatus {
    /** One entry per workspace folder that has a `lane.toml`. */
    workspaces: WorkspaceInfo[];
    /** `local`, `consul` or `kubernetes`. */
    backend: string;
    /** Set when the backend could not be asked; lanes are then empty. */
    backendError: ErrorInfo | null;
    /** The lane the developer's own requests enter, or `baseline`. */
    activeLane: string;
    /** The header that carries the lane id, e.g. `x-lane`. */
    laneHeader: string;
    /** The router's address, e.g. `127.0.0.1:4080`. */
    router: string | null;
    lanes: LaneInfo[];
    /** Baseline instances. */
    baseline: ServiceInfo[];
    /** Healthy instances of the active lane (of baseline when it is `baseline`). */
    healthy: number;
    /** All instances of the active lane (of baseline when it is `baseline`). */
    total: number;
    revision: string;
    /** This daemon's failed deploys, one per service and lane, each until the next deploy of that
     * service into that lane starts. */
    deployFailures: DeployFailure[];
    /** Each baseline service that follows production, with its drift; empty when none does. */
    baselineSync: BaselineSyncInfo[];
}

/** How a baseline service that follows production stands against it. */
export type Drift = "in_sync" | "behind" | "build_failed" | "unhealthy" | "unknown";

/** A baseline service that follows production: what it runs against what production runs. */
export interface BaselineSyncInfo {
    service: string;
    /** What is followed: `origin/main`, `refs/tags/v* (v1.10.0)`, `namespace prod`. */
    follows: string;
    /** Production's version (a commit, an image); null when it cannot be read. */
    production: string | null;
    /** The version baseline runs; null when it runs nothing yet. */
    running: string | null;
    drift: Drift;
    /** Why, when not in sync (a failed build's last lines, …). */
    reason: string | null;
    /** Seconds since the epoch. */
    lastSync: number | null;
}

/** A restart of the local agent by the server (`lane/agentRestarted`). */
export interface AgentRestartInfo {
    /** What the status bar shows: `lane agent restarted (was killed or crashed; back in 85 ms)`. */
    message: string;
    /** Why: `died` (it ended without stopping cleanly). */
    reason: string;
    /** From when the server saw the agent gone to when the new one answered. */
    downMs: number;
    /** How many times this server has restarted the agent. */
    restarts: number;
    /** Why it could not be started again; null when it was. */
    error: string | null;
}

/** A deploy that failed (not cancelled). */
export interface DeployFailure {
    service: string;
    lane: string;
    branch: string;
    commit: string;
    error: ErrorInfo;
    /** Seconds since the epoch. */
    at: number;
}

/** A workspace folder with a `lane.toml`. */
export interface WorkspaceInfo {
    folder: string;
    /** `<app>.<proc>`; null when `lane.toml` does not parse (see `error`). */
    service: string | null;
    protocol: "http" | "grpc" | null;
    /** The current branch (`HEAD` when detached); null outside a git repository. */
    branch: string | null;
    commit: string | null;
    error: string | null;
    /** `<proc>.<app>.localhost:<port>`. */
    host: string | null;
    /** `http://<proc>.<app>.localhost:<port>/`. */
    url: string | null;
}

export interface LaneInfo {
    id: string;
    parent: string | null;
    owner: string;
    /** Seconds since the epoch. */
    createdAt: number;
    expiresAt: number;
    /** Seconds left when this status was made. */
    expiresInSecs: number;
    /** The lane, its parent, …: where its requests fall back to before baseline. */
    chain: string[];
    services: ServiceInfo[];
    /** Set when every version's branch is merged: the lane ends with its branch. */
    merged: MergedInfo | null;
}

/** A lane whose work is merged into what baseline follows, and when it goes. */
export interface MergedInfo {
    /** Seconds since the epoch when the backend found it merged. */
    since: number;
    /** Seconds since the epoch when it is reclaimed; null once `lane extend` kept it. */
    reclaimAt: number | null;
    /** The ref its branches were merged into (`main`, `origin/main`). */
    target: string;
    /** Each branch and how it was merged. */
    reason: string;
}

/** One instance of a service (a personal version in a lane, or a baseline version). */
export interface ServiceInfo {
    service: string;
    /** The lane id, or `baseline`. */
    lane: string;
    /** `<branch>@<short commit>`. */
    version: string | null;
    branch: string | null;
    commit: string | null;
    owner: string | null;
    state: InstanceState;
    addr: string;
    /** Requests the router sent it in the last minute. */
    requestsPerMinute: number;
    /** Its output as a file on the daemon's machine, when it runs as a local process. */
    log: string | null;
}

export interface ErrorInfo {
    /** `invalid_input`, `not_found`, `conflict`, `not_owner`, `build_failed`, `start_failed`,
     * `unhealthy`, `cancelled`, `unavailable` or `internal`. */
    code: string;
    message: string;
    help: string | null;
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface NoArgs {}

export interface DeployArgs {
    /** The workspace folder; may be omitted when exactly one folder has a `lane.toml`. */
    folder: string | null;
    /** Default: the active lane. Created if missing. */
    lane: string | null;
    parent: string | null;
    ttl: string | null;
    force: boolean;
}

export interface DeployResult {
    service: string;
    lane: string;
    branch: string;
    commit: string;
    state: string;
    addr: string;
    url: string | null;
    /** The `Host` the router serves the service under. */
    host: string | null;
    router: string | null;
    /** A request with `<laneHeader>: <lane>` reaches the version just deployed. */
    laneHeader: string;
}

export interface SwitchArgs {
    lane: string;
}

export interface SwitchResult {
    activeLane: string;
}

export interface CreateArgs {
    lane: string;
    parent: string | null;
    ttl: string | null;
}

export interface DeleteArgs {
    lane: string;
    force: boolean;
}

export interface DeleteResult {
    deleted: string;
    /** The services whose personal versions in the lane were stopped. */
    stopped: string[];
    /** Where the developer's requests go now (`baseline` when the deleted lane was active). */
    activeLane: string;
}

export interface ExtendArgs {
    lane: string;
    by: string | null;
    force: boolean;
}

export interface AssignArgs {
    service: string;
    from: string;
    to: string;
    force: boolean;
}

export interface AssignResult {
    service: string;
    from: string;
    to: string;
}

/** Arguments of `lane.data.ls` (all optional). */
export interface DataLsArgs {
    /** Only this lane's data. */
    lane: string | null;
    /** The folder whose `lane.toml` declares the bindings; default: every service folder. */
    folder: string | null;
}

export type DataKind = "mysql" | "redis" | "kafka" | "apollo";

/** One binding a lane holds data for: a row of `lane data ls --json`. */
export interface DataInfo {
    lane: string;
    binding: string;
    kind: DataKind;
    /** The lane's own copy: a database, a Redis index or key prefix (`lane:<id>:`), Kafka topics, an Apollo cluster. */
    target: string;
    /**
     * `<n> bytes`, `<n> keys`, `<n> keys, ~<b> bytes (approximate)` (a key prefix), Kafka's partitions and
     * records or `<n> items`, when the server could be asked.
     */
    size: string | null;
    /** The sample quota (MySQL) or the pool (Redis). */
    quota: string | null;
}

/** Arguments of `lane.data.export`. */
export interface DataExportArgs {
    lane: string;
    /** Only this binding; default: every binding of a kind lane exports. */
    binding: string | null;
    /** The file to write: an absolute path or `file://` URI. */
    path: string;
    /** The folder whose `lane.toml` declares the bindings; default: every service folder. */
    folder: string | null;
}

/** Arguments of `lane.data.import`. */
export interface DataImportArgs {
    lane: string;
    binding: string | null;
    /** The lane data file to read. */
    path: string;
    /** Replace the data of a lane another developer owns. */
    force: boolean;
    folder: string | null;
}

/** Arguments of `lane.data.backup`. */
export interface DataBackupArgs {
    lane: string;
    folder: string | null;
}

/** Arguments of `lane.data.backups`. */
export interface DataBackupsArgs {
    /** Only this lane's backups. */
    lane: string | null;
}

/** Arguments of `lane.data.restore`. */
export interface DataRestoreArgs {
    lane: string;
    /** The backup's name; default: the lane's newest. */
    backup: string | null;
    force: boolean;
    folder: string | null;
}

/** What an export, import, backup or restore moved. */
export interface DataTransferResult {
    lane: string;
    /** The file written or read. */
    file: string;
    bindings: DataBindingReport[];
    bytes: number;
    seconds: number;
    /** Bindings left out (kinds not exported yet). */
    notes: string[];
}

export interface DataBindingReport {
    binding: string;
    kind: DataKind;
    target: string;
    /** Rows (MySQL), keys (Redis) or records (Kafka). */
    items: number;
    /** Tables, views and triggers (MySQL); topics (Kafka). */
    objects: number;
}

/** One backup: a row of `lane data backups --json`. */
export interface DataBackupInfo {
    lane: string;
    /** `YYYYMMDDTHHMMSSZ`, the `backup` of `lane.data.restore`. */
    name: string;
    path: string;
    bytes: number;
}

export interface HistoryParams {
    lane: string;
}

export interface HistoryEntryInfo {
    /** Seconds since the Unix epoch. */
    at: number;
    lane: string;
    event: "create" | "deploy" | "assign" | "switch" | "extend" | "delete" | "reclaim";
    /** The lane's owner at the time. */
    owner: string;
    /** Who asked; `null` for a reclaim and a switch. */
    actor: string | null;
    service: string | null;
    reason: string;
}

// ---- field lists, for the drift test ----------------------------------------------------------
// `Record<keyof T, true>` makes tsc reject a list that misses a field of T or names one T lacks,
// so these stay equal to the interfaces above; the drift test compares them with the server's.

type Fields<T> = Record<keyof T, true>;

const laneStatus: Fields<LaneStatus> = {
    workspaces: true, backend: true, backendError: true, activeLane: true, laneHeader: true,
    router: true, lanes: true, baseline: true, healthy: true, total: true, revision: true,
    deployFailures: true, baselineSync: true,
};
const baselineSyncInfo: Fields<BaselineSyncInfo> = {
    service: true, follows: true, production: true, running: true, drift: true, reason: true,
    lastSync: true,
};
const deployFailure: Fields<DeployFailure> = {
    service: true, lane: true, branch: true, commit: true, error: true, at: true,
};
const agentRestartInfo: Fields<AgentRestartInfo> = {
    message: true, reason: true, downMs: true, restarts: true, error: true,
};
const workspaceInfo: Fields<WorkspaceInfo> = {
    folder: true, service: true, protocol: true, branch: true, commit: true, error: true,
    host: true, url: true,
};
const laneInfo: Fields<LaneInfo> = {
    id: true, parent: true, owner: true, createdAt: true, expiresAt: true, expiresInSecs: true,
    chain: true, services: true, merged: true,
};
const mergedInfo: Fields<MergedInfo> = { since: true, reclaimAt: true, target: true, reason: true };
const serviceInfo: Fields<ServiceInfo> = {
    service: true, lane: true, version: true, branch: true, commit: true, owner: true, state: true,
    addr: true, requestsPerMinute: true, log: true,
};
const errorInfo: Fields<ErrorInfo> = { code: true, message: true, help: true };
const noArgs: Fields<NoArgs> = {};
const deployArgs: Fields<DeployArgs> = { folder: true, lane: true, parent: true, ttl: true, force: true };
const deployResult: Fields<DeployResult> = {
    service: true, lane: true, branch: true, commit: true, state: true, addr: true, url: true,
    host: true, router: true, laneHeader: true,
};
const switchArgs: Fields<SwitchArgs> = { lane: true };
const switchResult: Fields<SwitchResult> = { activeLane: true };
const createArgs: Fields<CreateArgs> = { lane: true, parent: true, ttl: true };
const deleteArgs: Fields<DeleteArgs> = { lane: true, force: true };
const deleteResult: Fields<DeleteResult> = { deleted: true, stopped: true, activeLane: true };
const extendArgs: Fields<ExtendArgs> = { lane: true, by: true, force: true };
const assignArgs: Fields<AssignArgs> = { service: true, from: true, to: true, force: true };
const assignResult: Fields<AssignResult> = { service: true, from: true, to: true };
const historyParams: Fields<HistoryParams> = { lane: true };
const dataLsArgs: Fields<DataLsArgs> = { lane: true, folder: true };
const dataInfo: Fields<DataInfo> = {
    lane: true, binding: true, kind: true, target: true, size: true, quota: true,
};
const dataExportArgs: Fields<DataExportArgs> = { lane: true, binding: true, path: true, folder: true };
const dataImportArgs: Fields<DataImportArgs> = {
    lane: true, binding: true, path: true, force: true, folder: true,
};
const dataBackupArgs: Fields<DataBackupArgs> = { lane: true, folder: true };
const dataBackupsArgs: Fields<DataBackupsArgs> = { lane: true };
const dataRestoreArgs: Fields<DataRestoreArgs> = { lane: true, backup: true, force: true, folder: true };
const dataTransferResult: Fields<DataTransferResult> = {
    lane: true, file: true, bindings: true, bytes: true, seconds: true, notes: true,
};
const dataBindingReport: Fields<DataBindingReport> = {
    binding: true, kind: true, target: true, items: true, objects: true,
};
const dataBackupInfo: Fields<DataBackupInfo> = { lane: true, name: true, path: true, bytes: true };
const historyEntryInfo: Fields<HistoryEntryInfo> = {
    at: true, lane: true, event: true, owner: true, actor: true, service: true, reason: true,
};

/** Type name → its field names, as `lane lsp --describe` lists them under `types`. */
export const TYPE_FIELDS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
    Object.entries({
        LaneStatus: laneStatus, WorkspaceInfo: workspaceInfo, LaneInfo: laneInfo,
        ServiceInfo: serviceInfo, ErrorInfo: errorInfo, DeployFailure: deployFailure,
        BaselineSyncInfo: baselineSyncInfo, NoArgs: noArgs, DeployArgs: deployArgs,
        DeployResult: deployResult, SwitchArgs: switchArgs, SwitchResult: switchResult,
        CreateArgs: createArgs, DeleteArgs: deleteArgs, DeleteResult: deleteResult,
        ExtendArgs: extendArgs, AssignArgs: assignArgs, AssignResult: assignResult,
        HistoryParams: historyParams, HistoryEntryInfo: historyEntryInfo, MergedInfo: mergedInfo,
        AgentRestartInfo: agentRestartInfo,
        DataLsArgs: dataLsArgs, DataInfo: dataInfo,
        DataExportArgs: dataExportArgs, DataImportArgs: dataImportArgs,
        DataBackupArgs: dataBackupArgs, DataBackupsArgs: dataBackupsArgs,
        DataRestoreArgs: dataRestoreArgs, DataTransferResult: dataTransferResult,
        DataBindingReport: dataBindingReport, DataBackupInfo: dataBackupInfo,
    }).map(([name, fields]) => [name, Object.keys(fields).sort()]),
);

/** What `lane lsp --describe` prints (the parts the drift test reads). */
export interface Description {
    protocolVersion: number;
    requests: { method: string; direction: string; params: string | null; result: string }[];
    notifications: { method: string; direction: string; params: string }[];
    commands: { command: string; arguments: string; result: string; progress: boolean }[];
    errors: { laneError: number; invalidParams: number; requestCancelled: number; data: string };
    types: Record<string, Record<string, string>>;
}
