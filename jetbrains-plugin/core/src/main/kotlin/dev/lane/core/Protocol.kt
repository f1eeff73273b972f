// The custom protocol of `lane lsp`: every method and command name and every type that crosses the
// wire, mirrored from the server's `server/cli/src/lsp/ext.rs` (as `vscode-extension/src/lsp_ext.ts`
// mirrors it for VS Code). This is the only file of the plugin that knows them. The drift test
// (ProtocolDriftTest) compares names, fields, field types and nullability with
// `lane lsp --describe`; docs/protocol.md documents them.
//
// Wire rules (from ext.rs): field names are camelCase; optional fields are always present, `null`
// when absent. The classes are read and written by LSP4J's Gson, which fills fields directly: a
// non-null Kotlin type here is a field the server always sends.

package dev.lane.core

/** Bumped by the server when a method, command or shape changes incompatibly; the server also sends
 * it in `initialize` → `capabilities.experimental.laneProtocolVersion`. */
const val PROTOCOL_VERSION = 2

/** The lane id that means "no lane": requests reach only baseline versions. */
const val BASELINE = "baseline"

object Methods {
    /** `lane/status` (client → server, no params): the status the status bar shows. */
    const val STATUS = "lane/status"

    /** `lane/statusChanged` (server → client): pushed whenever what `lane/status` returns changes. */
    const val STATUS_CHANGED = "lane/statusChanged"

    /** `lane/history` (client → server, [HistoryParams]): every change to a lane, oldest first,
     * kept for a while after the lane is deleted. */
    const val HISTORY = "lane/history"

    val REQUESTS: List<String> = listOf(STATUS, HISTORY)
    /** `lane/agentRestarted` (server → client, [AgentRestartInfo]): the local agent died (killed,
     * crashed) and the server started it again at once, or could not ([AgentRestartInfo.error]). */
    const val AGENT_RESTARTED = "lane/agentRestarted"

    val NOTIFICATIONS: List<String> = listOf(STATUS_CHANGED, AGENT_RESTARTED)
}

/** A `workspace/executeCommand` command: `arguments` is `[args]`, or `[]` for commands without. */
class CommandSpec<A : Any, R : Any> internal constructor(
    val name: String,
    /** The argument class; [NoArgs] for commands without arguments. */
    val argsClass: Class<A>,
    /** The result type; [resultIsList] when the server answers an array of it. */
    val resultClass: Class<R>,
    val resultIsList: Boolean,
    /** Whether it reports work-done progress and can be cancelled. */
    val progress: Boolean,
) {
    /** The argument type as `lane lsp --describe` spells it. */
    val argsType: String get() = argsClass.simpleName

    /** The result type as `lane lsp --describe` spells it (`LaneInfo[]` for lists). */
    val resultType: String get() = resultClass.simpleName + if (resultIsList) "[]" else ""

    override fun toString(): String = name
}

object Commands {
    val status = CommandSpec("lane.status", NoArgs::class.java, LaneStatus::class.java, false, false)
    val deployCurrentBranch =
        CommandSpec("lane.deployCurrentBranch", DeployArgs::class.java, DeployResult::class.java, false, true)
    val switchTraffic = CommandSpec("lane.switchTraffic", SwitchArgs::class.java, SwitchResult::class.java, false, false)
    val list = CommandSpec("lane.list", NoArgs::class.java, LaneInfo::class.java, true, false)
    val create = CommandSpec("lane.create", CreateArgs::class.java, LaneInfo::class.java, false, false)
    val delete = CommandSpec("lane.delete", DeleteArgs::class.java, DeleteResult::class.java, false, false)
    val extend = CommandSpec("lane.extend", ExtendArgs::class.java, LaneInfo::class.java, false, false)
    val assign = CommandSpec("lane.assign", AssignArgs::class.java, AssignResult::class.java, false, false)
    /** What each lane owns of its data sources. */
    val dataLs = CommandSpec("lane.data.ls", DataLsArgs::class.java, DataInfo::class.java, true, false)
    val dataExport =
        CommandSpec("lane.data.export", DataExportArgs::class.java, DataTransferResult::class.java, false, true)
    val dataImport =
        CommandSpec("lane.data.import", DataImportArgs::class.java, DataTransferResult::class.java, false, true)
    val dataBackup =
        CommandSpec("lane.data.backup", DataBackupArgs::class.java, DataTransferResult::class.java, false, true)
    val dataBackups =
        CommandSpec("lane.data.backups", DataBackupsArgs::class.java, DataBackupInfo::class.java, true, false)
    val dataRestore =
        CommandSpec("lane.data.restore", DataRestoreArgs::class.java, DataTransferResult::class.java, false, true)

    val ALL: List<CommandSpec<*, *>> =
        listOf(
            status, deployCurrentBranch, switchTraffic, list, create, delete, extend, assign, dataLs,
            dataExport, dataImport, dataBackup, dataBackups, dataRestore,
        )
    val NAMES: List<String> = ALL.map { it.name }
}

object ErrorCodes {
    /** JSON-RPC error code of a lane error; `data` is an [ErrorInfo]. */
    const val LANE_ERROR = -32001
    const val INVALID_PARAMS = -32602
    const val REQUEST_CANCELLED = -32800
}

/** The values of [ServiceInfo.state]. */
object InstanceState {
    const val STARTING = "starting"
    const val HEALTHY = "healthy"
    const val UNHEALTHY = "unhealthy"
    const val CRASHED = "crashed"
    const val STOPPED = "stopped"
    val ALL: List<String> = listOf(STARTING, HEALTHY, UNHEALTHY, CRASHED, STOPPED)
}

/** The values of [BaselineSyncInfo.drift]: how a baseline service that follows production stands. */
object Drift {
    const val IN_SYNC = "in_sync"
    const val BEHIND = "behind"
    const val BUILD_FAILED = "build_failed"
    const val UNHEALTHY = "unhealthy"
    const val UNKNOWN = "unknown"
    val ALL: List<String> = listOf(IN_SYNC, BEHIND, BUILD_FAILED, UNHEALTHY, UNKNOWN)
}

/** The values of [WorkspaceInfo.protocol]. */
object ServiceProtocol {
    const val HTTP = "http"
    const val GRPC = "grpc"
    val ALL: List<String> = listOf(HTTP, GRPC)
}

/** The values of [HistoryEntryInfo.event]. */
object LaneEvent {
    const val CREATE = "create"
    const val DEPLOY = "deploy"
    const val ASSIGN = "assign"
    const val SWITCH = "switch"
    const val EXTEND = "extend"
    const val DELETE = "delete"
    const val RECLAIM = "reclaim"
    val ALL: List<String> = listOf(CREATE, DEPLOY, ASSIGN, SWITCH, EXTEND, DELETE, RECLAIM)
}

/** The values of [DataInfo.kind]. */
object DataKind {
    const val MYSQL = "mysql"
    const val REDIS = "redis"
    const val KAFKA = "kafka"
    const val APOLLO = "apollo"
    val ALL: List<String> = listOf(MYSQL, REDIS, KAFKA, APOLLO)
}

/** The fields whose wire type is a set of string literals (kept as `String` here): their values. */
val LITERAL_FIELDS: Map<String, List<String>> = mapOf(
    "ServiceInfo.state" to InstanceState.ALL,
    "HistoryEntryInfo.event" to LaneEvent.ALL,
    "WorkspaceInfo.protocol" to ServiceProtocol.ALL,
    "BaselineSyncInfo.drift" to Drift.ALL,
    "DataInfo.kind" to DataKind.ALL,
    "DataBindingReport.kind" to DataKind.ALL,
)

// ---- shapes -----------------------------------------------------------------------------------

/** The status of the workspace and of every lane: what the status bar and the Lanes tree render. */
data class LaneStatus(
    /** One entry per service directory (a folder with a `lane.toml`, or a monorepo's service). */
    val workspaces: List<WorkspaceInfo>,
    /** `local`, `consul` or `kubernetes`. */
    val backend: String,
    /** Set when the backend could not be asked; lanes are then empty. */
    val backendError: ErrorInfo?,
    /** The lane the developer's own requests enter, or `baseline`. */
    val activeLane: String,
    /** The header that carries the lane id, e.g. `x-lane`. */
    val laneHeader: String,
    /** The router's address, e.g. `127.0.0.1:4080`. */
    val router: String?,
    val lanes: List<LaneInfo>,
    /** Baseline instances. */
    val baseline: List<ServiceInfo>,
    /** Healthy instances of the active lane (of baseline when it is `baseline`). */
    val healthy: Long,
    /** All instances of the active lane (of baseline when it is `baseline`). */
    val total: Long,
    val revision: String,
    /** This daemon's failed deploys, one per service and lane, each until the next deploy of that
     * service into that lane starts. */
    val deployFailures: List<DeployFailure>,
    /** Each baseline service that follows production, with its drift; empty when none does. */
    val baselineSync: List<BaselineSyncInfo>,
)

/** A baseline service that follows production: what it runs against what production runs. */
data class BaselineSyncInfo(
    val service: String,
    /** What is followed: `origin/main`, `refs/tags/v* (v1.10.0)`, `namespace prod`. */
    val follows: String,
    /** Production's version (a commit, an image); null when it cannot be read. */
    val production: String?,
    /** The version baseline runs; null when it runs nothing yet. */
    val running: String?,
    /** One of [Drift]. */
    val drift: String,
    /** Why, when not in sync (a failed build's last lines, …). */
    val reason: String?,
    /** Seconds since the epoch. */
    val lastSync: Long?,
)

/** A restart of the local agent by the server (`lane/agentRestarted`). */
data class AgentRestartInfo(
    /** What the status bar shows: `lane agent restarted (was killed or crashed; back in 85 ms)`. */
    val message: String,
    /** Why: `died` (it ended without stopping cleanly). */
    val reason: String,
    /** From when the server saw the agent gone to when the new one answered. */
    val downMs: Long,
    /** How many times this server has restarted the agent. */
    val restarts: Long,
    /** Why it could not be started again; null when it was. */
    val error: String?,
)

/** A deploy that failed (not cancelled). */
data class DeployFailure(
    val service: String,
    val lane: String,
    val branch: String,
    val commit: String,
    val error: ErrorInfo,
    /** Seconds since the epoch. */
    val at: Long,
)

/** A service directory. */
data class WorkspaceInfo(
    val folder: String,
    /** `<app>.<proc>`; null when `lane.toml` does not parse (see [error]). */
    val service: String?,
    /** One of [ServiceProtocol]. */
    val protocol: String?,
    /** The current branch (`HEAD` when detached); null outside a git repository. */
    val branch: String?,
    val commit: String?,
    val error: String?,
    /** `<proc>.<app>.localhost:<port>`. */
    val host: String?,
    /** `http://<proc>.<app>.localhost:<port>/`. */
    val url: String?,
)

data class LaneInfo(
    val id: String,
    val parent: String?,
    val owner: String,
    /** Seconds since the epoch. */
    val createdAt: Long,
    val expiresAt: Long,
    /** Seconds left when this status was made. */
    val expiresInSecs: Long,
    /** The lane, its parent, …: where its requests fall back to before baseline. */
    val chain: List<String>,
    val services: List<ServiceInfo>,
    /** Set when every version's branch is merged: the lane ends with its branch. */
    val merged: MergedInfo? = null,
)

/** A lane whose work is merged into what baseline follows, and when it goes. */
data class MergedInfo(
    /** Seconds since the epoch when the backend found it merged. */
    val since: Long,
    /** Seconds since the epoch when it is reclaimed; `null` once `lane extend` kept it. */
    val reclaimAt: Long?,
    /** The ref its branches were merged into (`main`, `origin/main`). */
    val target: String,
    /** Each branch and how it was merged. */
    val reason: String,
)

/** One instance of a service (a personal version in a lane, or a baseline version). */
data class ServiceInfo(
    val service: String,
    /** The lane id, or `baseline`. */
    val lane: String,
    /** `<branch>@<short commit>`. */
    val version: String?,
    val branch: String?,
    val commit: String?,
    val owner: String?,
    /** One of [InstanceState]. */
    val state: String,
    val addr: String,
    /** Requests the router sent it in the last minute. */
    val requestsPerMinute: Long,
    /** Its output as a file on the daemon's machine, when it runs as a local process. */
    val log: String?,
)

data class ErrorInfo(
    /** `invalid_input`, `not_found`, `conflict`, `not_owner`, `build_failed`, `start_failed`,
     * `unhealthy`, `cancelled`, `unavailable` or `internal`. */
    val code: String,
    val message: String,
    val help: String?,
)

/** The argument of commands without arguments (sent as no argument at all). */
class NoArgs {
    override fun equals(other: Any?): Boolean = other is NoArgs
    override fun hashCode(): Int = 0
    override fun toString(): String = "NoArgs"
}

data class DeployArgs(
    /** The service directory; may be null when the workspace has exactly one. */
    val folder: String?,
    /** Default: the active lane. Created if missing. */
    val lane: String?,
    val parent: String?,
    val ttl: String?,
    val force: Boolean,
)

data class DeployResult(
    val service: String,
    val lane: String,
    val branch: String,
    val commit: String,
    val state: String,
    val addr: String,
    val url: String?,
    /** The `Host` the router serves the service under. */
    val host: String?,
    val router: String?,
    /** A request with `<laneHeader>: <lane>` reaches the version just deployed. */
    val laneHeader: String,
)

data class SwitchArgs(val lane: String)

data class SwitchResult(val activeLane: String)

data class CreateArgs(val lane: String, val parent: String?, val ttl: String?)

data class DeleteArgs(val lane: String, val force: Boolean)

data class DeleteResult(
    val deleted: String,
    /** The services whose personal versions in the lane were stopped. */
    val stopped: List<String>,
    /** Where the developer's requests go now (`baseline` when the deleted lane was active). */
    val activeLane: String,
)

data class ExtendArgs(val lane: String, val by: String?, val force: Boolean)

data class AssignArgs(val service: String, val from: String, val to: String, val force: Boolean)

data class AssignResult(val service: String, val from: String, val to: String)

data class HistoryParams(val lane: String)

/** Arguments of `lane.data.ls`: only this lane's data; the folder whose `lane.toml` declares the bindings. */
data class DataLsArgs(val lane: String?, val folder: String?)

/** One binding a lane holds data for: a row of `lane data ls --json`. */
data class DataInfo(
    val lane: String,
    val binding: String,
    /** One of [DataKind.ALL]. */
    val kind: String,
    /** The lane's own copy: a database, a Redis index, an Apollo cluster. */
    val target: String,
    /** `<n> bytes`, `<n> keys` or `<n> items`, when the server could be asked. */
    val size: String?,
    /** The sample quota (MySQL) or the pool (Redis). */
    val quota: String?,
)

/** Arguments of `lane.data.export`: the file to write (absolute path or `file://` URI). */
data class DataExportArgs(val lane: String, val binding: String?, val path: String, val folder: String?)

/** Arguments of `lane.data.import`: the lane data file to read; `force` for another developer's lane. */
data class DataImportArgs(
    val lane: String,
    val binding: String?,
    val path: String,
    val force: Boolean,
    val folder: String?,
)

/** Arguments of `lane.data.backup`. */
data class DataBackupArgs(val lane: String, val folder: String?)

/** Arguments of `lane.data.backups`: only this lane's backups. */
data class DataBackupsArgs(val lane: String?)

/** Arguments of `lane.data.restore`: the backup's name (default: the newest). */
data class DataRestoreArgs(val lane: String, val backup: String?, val force: Boolean, val folder: String?)

/** What an export, import, backup or restore moved. */
data class DataTransferResult(
    val lane: String,
    /** The file written or read. */
    val file: String,
    val bindings: List<DataBindingReport>,
    val bytes: Long,
    val seconds: Double,
    /** Bindings left out (kinds not exported yet). */
    val notes: List<String>,
)

/** One binding an export or import moved. */
data class DataBindingReport(
    val binding: String,
    /** One of [DataKind.ALL]. */
    val kind: String,
    val target: String,
    /** Rows (MySQL), keys (Redis) or records (Kafka). */
    val items: Long,
    /** Tables, views and triggers (MySQL); topics (Kafka). */
    val objects: Long,
)

/** One backup: a row of `lane data backups --json`. */
data class DataBackupInfo(val lane: String, val name: String, val path: String, val bytes: Long)

/** One change to a lane, as `lane history` lists it. */
data class HistoryEntryInfo(
    /** Seconds since the Unix epoch. */
    val at: Long,
    val lane: String,
    /** One of [LaneEvent.ALL]. */
    val event: String,
    /** The lane's owner at the time. */
    val owner: String,
    /** Who asked; `null` for a reclaim and a switch. */
    val actor: String?,
    val service: String?,
    val reason: String,
)

/** Every wire type by the name `lane lsp --describe` gives it. */
val TYPES: Map<String, Class<*>> = listOf(
    LaneStatus::class.java, WorkspaceInfo::class.java, LaneInfo::class.java, ServiceInfo::class.java,
    ErrorInfo::class.java, DeployFailure::class.java, BaselineSyncInfo::class.java, NoArgs::class.java, DeployArgs::class.java, DeployResult::class.java,
    SwitchArgs::class.java, SwitchResult::class.java, CreateArgs::class.java, DeleteArgs::class.java,
    DeleteResult::class.java, ExtendArgs::class.java, AssignArgs::class.java, AssignResult::class.java,
    HistoryParams::class.java, HistoryEntryInfo::class.java, MergedInfo::class.java,
    AgentRestartInfo::class.java,
    DataLsArgs::class.java, DataInfo::class.java,
    DataExportArgs::class.java, DataImportArgs::class.java, DataBackupArgs::class.java,
    DataBackupsArgs::class.java, DataRestoreArgs::class.java, DataTransferResult::class.java,
    DataBindingReport::class.java, DataBackupInfo::class.java,
).associateBy { it.simpleName }
