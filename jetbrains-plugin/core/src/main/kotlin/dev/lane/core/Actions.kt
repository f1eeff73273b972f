// The plugin's actions: their ids and titles (the VS Code extension's command ids and titles), the
// argument objects they send, and every message they show (the texts of
// vscode-extension/src/commands.ts). Pure: the plugin's actions only ask, call and show these.

package dev.lane.core

import java.time.Instant
import java.time.ZoneOffset
import java.time.format.DateTimeFormatter
import java.util.Locale

/** One action under Tools → Lane (and in Search Everywhere): id, title, description. */
data class ActionSpec(val id: String, val title: String, val description: String)

object LaneActions {
    const val SHOW_STATUS = "lane.showStatus"
    const val DEPLOY = "lane.deploy"
    const val SWITCH = "lane.switch"
    const val CREATE = "lane.createLane"
    const val DELETE = "lane.deleteLane"
    const val EXTEND = "lane.extendLane"
    const val ASSIGN = "lane.assignVersion"
    const val COPY_REQUEST = "lane.copyRequest"
    const val REFRESH = "lane.refresh"
    const val RESTART_SERVER = "lane.restartServer"
    const val SHOW_LOGS = "lane.showLogs"
    const val START_PROXY = "lane.startProxy"
    const val STOP_PROXY = "lane.stopProxy"
    const val OPEN_SETTINGS = "lane.openServerSettings"

    /** A lane's data (VS Code: the same command ids; from the tree, on a Data or binding node). */
    const val EXPORT_DATA = "lane.exportData"
    const val IMPORT_DATA = "lane.importData"
    const val BACKUP_DATA = "lane.backupData"
    const val RESTORE_DATA = "lane.restoreData"

    /** The tree's context actions, on the selected node. */
    const val SWITCH_TO = "lane.tree.switchTo"
    const val DEPLOY_HERE = "lane.tree.deployHere"
    const val TREE_COPY_REQUEST = "lane.tree.copyRequest"
    const val SHOW_SERVICE_LOGS = "lane.tree.showServiceLogs"

    /** The menu group under Tools. */
    const val GROUP = "lane.ToolsGroup"
    const val GROUP_TITLE = "Lane"

    /** The entries of Tools → Lane, in menu order. */
    val MENU: List<ActionSpec> = listOf(
        ActionSpec(SHOW_STATUS, "Show Status", "Show the active lane, its services and their health"),
        ActionSpec(DEPLOY, "Deploy Current Branch", "Build the current branch and deploy it into a lane"),
        ActionSpec(SWITCH, "Switch Traffic", "Choose the lane your own requests enter"),
        ActionSpec(CREATE, "Create Lane", "Create a lane, optionally stacked on another"),
        ActionSpec(DELETE, "Delete Lane", "Delete a lane with everything it runs"),
        ActionSpec(EXTEND, "Extend Lane", "Make a lane live longer"),
        ActionSpec(ASSIGN, "Move Version To Another Lane…", "Move a personal version from one lane to another"),
        ActionSpec(EXPORT_DATA, "Export Data…", "Write a lane's data (or one binding's) to a lane data file"),
        ActionSpec(IMPORT_DATA, "Import Data…", "Replace a lane's data (or one binding's) with a lane data file's"),
        ActionSpec(BACKUP_DATA, "Back Up Data", "Save a lane's data as a new backup"),
        ActionSpec(RESTORE_DATA, "Restore Data…", "Replace a lane's data with one of its backups"),
        ActionSpec(COPY_REQUEST, "Copy Request With Lane Header", "Copy a curl command that reaches the service in the active lane"),
        ActionSpec(START_PROXY, "Start Proxy", "Run lane proxy: requests sent with HTTP_PROXY enter the active lane"),
        ActionSpec(STOP_PROXY, "Stop Proxy", "Stop the lane proxy this IDE started"),
        ActionSpec(REFRESH, "Refresh", "Ask lane lsp for the status now"),
        ActionSpec(RESTART_SERVER, "Restart Server", "Restart lane lsp"),
        ActionSpec(SHOW_LOGS, "Show Server Logs", "Show what lane lsp logged: deploy stages, build and service output"),
        ActionSpec(OPEN_SETTINGS, "Set Server Path", "Open Settings → Tools → Lane"),
    )

    /** The Lanes tree's context actions (not in Tools → Lane: they act on the selected node). */
    val TREE: List<ActionSpec> = listOf(
        ActionSpec(SWITCH_TO, "Switch Traffic To This Lane", "Send your requests into this lane"),
        ActionSpec(DEPLOY_HERE, "Deploy Current Branch Here", "Build the current branch and deploy it into this lane"),
        ActionSpec(TREE_COPY_REQUEST, "Copy Request", "Copy a curl command that reaches this service or lane"),
        ActionSpec(SHOW_SERVICE_LOGS, "Show Logs", "Open the service's output file"),
    )

    fun spec(id: String): ActionSpec = (MENU + TREE).first { it.id == id }
}

// ---- arguments --------------------------------------------------------------------------------

/** The service folders that can be deployed: those whose `lane.toml` names a service. */
fun deployableWorkspaces(status: LaneStatus?): List<WorkspaceInfo> =
    status?.workspaces.orEmpty().filter { !it.service.isNullOrEmpty() }

fun deployArgs(ws: WorkspaceInfo, lane: String, force: Boolean = false): DeployArgs =
    DeployArgs(folder = ws.folder, lane = lane, parent = null, ttl = null, force = force)

fun createArgs(lane: String, parent: String?, ttl: String): CreateArgs = CreateArgs(lane.trim(), parent, ttl.trim())

fun deleteArgs(lane: String, force: Boolean = false): DeleteArgs = DeleteArgs(lane, force)

fun extendArgs(lane: String, by: String, force: Boolean = false): ExtendArgs = ExtendArgs(lane, by.trim(), force)

fun assignArgs(service: String, from: String, to: String, force: Boolean = false): AssignArgs =
    AssignArgs(service, from, to, force)

/** A personal version that Assign Version can move. */
data class MovableVersion(val service: String, val lane: String, val version: String?) {
    val label: String get() = service
    val description: String get() = "${version ?: ""} in $lane"
}

fun movableVersions(lanes: List<LaneInfo>): List<MovableVersion> =
    lanes.flatMap { l -> l.services.map { MovableVersion(it.service, l.id, it.version) } }

/** Whether a failed deploy may be retried with `force` (after asking). */
fun deployMayForce(u: UserError): Boolean = u.code == "not_owner"

/** Whether a failed delete may be retried with `force` (after asking). */
fun deleteMayForce(u: UserError): Boolean = u.code == "not_owner" || u.code == "conflict"

// ---- texts ------------------------------------------------------------------------------------

/** Every message the actions show, word for word those of the VS Code extension where the concept
 * is the same in the IDE. */
object Texts {
    const val CHOOSE_LANE = "Choose a lane"
    const val NEW_LANE_TITLE = "New lane"
    const val LANE_ID_PROMPT = "Lane id: lowercase letters, digits and -, 1–40 characters"
    const val DEFAULT_DURATION = "24h"
    const val LIFETIME_PROMPT = "Lifetime"
    const val HOW_MUCH_LONGER = "How much longer"
    const val WHICH_SERVICE = "Which service?"
    const val SWITCH_TITLE = "Send your requests into…"
    const val DELETE_WHICH = "Delete which lane?"
    const val EXTEND_WHICH = "Extend which lane?"
    const val MOVE_WHICH = "Move which personal version?"
    const val NO_PARENT = "no parent"
    const val NO_PARENT_DETAIL = "falls back to baseline"
    const val OPEN_LANES_VIEW = "Open Lanes View"
    const val SWITCH_TRAFFIC = "Switch Traffic"
    const val SWITCH_TRAFFIC_TO_IT = "Switch Traffic To It"
    const val COPY_REQUEST = "Copy Request"
    const val START_PROXY = "Start Proxy"
    const val COPY_HTTP_PROXY = "Copy HTTP_PROXY"
    const val FORCE = "Force"
    const val DELETE = "Delete"
    const val FORCE_DELETE = "Force Delete"
    const val OPEN_SETTINGS = "Open Settings"
    const val NOTHING_TO_DEPLOY = "Lane: no workspace folder has a valid lane.toml to deploy."
    const val NOTHING_TO_MOVE = "Lane: no lane has a personal version to move."
    const val NO_SERVICE = "Lane: no workspace folder has a service (lane.toml)."
    const val NO_ROUTER = "Lane: the router is not running."
    const val WAITING = "Waiting for `lane lsp`…"
    const val NOT_FOUND_TEXT = "lane: not found"
    const val STOPPED_TEXT = "lane: stopped"
    const val STOPPED_TOOLTIP = "lane lsp stopped. Click to restart it; its log: Tools → Lane → Show Server Logs."
    const val TOOL_WINDOW = "Lanes"

    /** The status-bar tooltip while no server was found: where it looked, the fix, the click. */
    fun notFoundTooltip(tried: List<String>): String = "${serverNotFoundText(tried)} Click to set the path."
    fun cancelled(what: String): String = "Lane: $what cancelled."

    /** `Deploy demo.b from branch feature/login`. */
    fun deployWhat(ws: WorkspaceInfo): String =
        "Deploy ${ws.service ?: ws.folder} ${ws.branch?.let { "from branch $it" } ?: "(not a git branch)"}"
    fun deployTitle(ws: WorkspaceInfo): String = "${deployWhat(ws)} into which lane?"
    fun deployNewTitle(ws: WorkspaceInfo): String = "${deployWhat(ws)} into a new lane"
    fun notAWorkspaceService(service: String): String =
        "Lane: $service is not a service of this workspace; open its repository to deploy it."
    fun deployAnyway(message: String): String = "${plain(message)} Deploy anyway?"
    fun deployed(r: DeployResult): String =
        "Lane: deployed ${r.service} (${r.branch}@${r.commit.take(8)}) into ${r.lane}: ${r.state}."
    /** The buttons after a deploy: switching is offered when the lane is not the active one. */
    fun afterDeploy(r: DeployResult, activeLane: String): List<String> =
        if (r.lane != activeLane) listOf(SWITCH_TRAFFIC_TO_IT, COPY_REQUEST) else listOf(COPY_REQUEST)
    /** The buttons after a switch: the proxy is offered while it does not run. */
    fun afterSwitch(activeLane: String, proxyRunning: Boolean): List<String> = when {
        activeLane == BASELINE -> emptyList()
        proxyRunning -> listOf(COPY_REQUEST)
        else -> listOf(START_PROXY, COPY_REQUEST)
    }
    fun stackOn(lane: String): String = "Stack $lane on a parent lane?"
    fun owner(owner: String): String = "owner $owner"
    fun created(id: String, ttl: String): String = "Lane: created $id (expires in $ttl)."
    fun deleteAnyway(message: String): String = "${plain(message)} Delete anyway?"
    fun extendTitle(lane: String): String = "Extend $lane"
    fun moveTo(service: String, from: String): String = "Move $service from $from to…"
    fun moved(r: AssignResult): String = "Lane: moved ${r.service} from ${r.from} to ${r.to}."
    fun noLogFile(service: String?): String =
        "Lane: ${service ?: "this service"} has no log file here (it does not run as a local process); " +
            "its deploys are in the server log (Tools → Lane → Show Server Logs)."
    /** The title of a deploy's progress (the server's `begin` title). */
    fun progressTitle(serverTitle: String): String = "Lane: $serverTitle"
}

private val EXACT_TIME = DateTimeFormatter.ofPattern("EEE, dd MMM yyyy HH:mm 'UTC'", Locale.ENGLISH).withZone(ZoneOffset.UTC)

/** `Lane: extended feature-x by 30m; it now expires in 3d (Thu, 03 Dec 2026 10:25 UTC).`: the same
 * rounding as the Lanes tree, and the exact time. */
fun extendedText(lane: LaneInfo, by: String): String =
    "Lane: extended ${lane.id} by $by; it now ${expiryText(lane)} (${EXACT_TIME.format(Instant.ofEpochSecond(lane.expiresAt))})."

/** The delete confirmation: what stops, and where the developer's requests go when it is theirs. */
fun deleteConfirmText(status: LaneStatus?, lane: String): String {
    val info = status?.let { findLane(it, lane) }
    val services = info?.services.orEmpty().map { it.service }.distinct().sorted()
    val parts = mutableListOf("Delete lane $lane?")
    parts.add(if (services.isNotEmpty()) "Its versions of ${services.joinToString(", ")} stop." else "It runs no personal version.")
    if (status?.activeLane == lane) parts.add("It is the lane your requests enter: they fall back to baseline.")
    val stacked = status?.lanes.orEmpty().filter { it.parent == lane }.map { it.id }
    if (stacked.isNotEmpty()) parts.add("Lanes stacked on it: ${stacked.joinToString(", ")}.")
    return parts.joinToString(" ")
}

/** After a delete: what stopped and where requests go now. */
fun deletedText(r: DeleteResult, wasActive: Boolean): String {
    val stopped = if (r.stopped.isNotEmpty()) "; stopped ${r.stopped.joinToString(", ")}" else ""
    val traffic = if (wasActive && r.activeLane == BASELINE) "; your requests fall back to baseline" else ""
    return "Lane: deleted ${r.deleted}$stopped$traffic."
}

/** The log file of [service]'s instance in [lane] (a local process's output), when there is one. */
fun serviceLog(status: LaneStatus?, lane: String?, service: String?): String? {
    if (status == null || lane == null || service == null) return null
    return laneInstances(status, lane).firstOrNull { it.service == service && !it.log.isNullOrEmpty() }?.log
}

/** The service folder a tree node's service is deployed from; null when it is another repo's. */
fun workspaceOf(status: LaneStatus?, service: String): WorkspaceInfo? =
    deployableWorkspaces(status).firstOrNull { it.service == service }

// ---- data (vscode-extension/src/dataOps.ts and dataCommands.ts) -------------------------------

/** What a data action applies to, from the tree node it was invoked on. */
data class DataTarget(
    val lane: String,
    /** Only this binding (the action was invoked on a binding of the Data node). */
    val binding: String? = null,
)

/** The lane (and binding) of a Data, binding or lane node; null for other nodes and baseline's. */
fun dataTarget(node: TreeNode?): DataTarget? {
    val lane = node?.lane ?: return null
    if (lane == BASELINE) return null
    return when (node.kind) {
        NodeKind.DATA_BINDING -> DataTarget(lane, node.label)
        NodeKind.DATA, NodeKind.LANE -> DataTarget(lane, null)
        else -> null
    }
}

private fun oneDecimal(v: Double): String = String.format(Locale.ROOT, "%.1f", v)

/** `1.5 MB`, `320 KB`, `12 bytes`. */
fun sizeText(bytes: Long): String {
    if (bytes < 1024) return "$bytes byte${if (bytes == 1L) "" else "s"}"
    val units = listOf("KB", "MB", "GB", "TB")
    var v = bytes / 1024.0
    var u = 0
    while (v >= 1024 && u < units.size - 1) {
        v /= 1024
        u++
    }
    return "${if (v < 10) oneDecimal(v) else Math.round(v).toString()} ${units[u]}"
}

private val FILE_STAMP = DateTimeFormatter.ofPattern("yyyyMMdd-HHmm", Locale.ROOT).withZone(ZoneOffset.UTC)

/** The suggested file name of an export: `<lane>[-<binding>]-<YYYYMMDD-HHMM>.lanedata` (UTC). */
fun exportFileName(t: DataTarget, now: Instant): String =
    "${t.lane}${t.binding?.let { "-$it" } ?: ""}-${FILE_STAMP.format(now)}.lanedata"

/** The extension of lane data files (the file choosers' filter). */
const val LANE_DATA_EXTENSION = "lanedata"

private val BACKUP_NAME = Regex("""^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$""")

/** `20261130T124500Z` → `2026-11-30 12:45:00 UTC`; other names as they are. */
fun backupTime(name: String): String {
    val m = BACKUP_NAME.matchEntire(name) ?: return name
    val g = m.groupValues
    return "${g[1]}-${g[2]}-${g[3]} ${g[4]}:${g[5]}:${g[6]} UTC"
}

/** One entry of Restore's backup chooser: [name] is what `lane.data.restore` is sent. */
data class BackupPick(val label: String, val description: String, val detail: String, val name: String)

/** The chooser of a lane's backups: newest first, with size and file. */
fun backupPicks(backups: List<DataBackupInfo>, lane: String): List<BackupPick> =
    backups.filter { it.lane == lane }.sortedByDescending { it.name }.mapIndexed { i, b ->
        BackupPick(backupTime(b.name), "${sizeText(b.bytes)}${if (i == 0) " · newest" else ""}", b.path, b.name)
    }

/** The confirmation before an import or a restore replaces a lane's data. */
fun replaceConfirmText(t: DataTarget, from: String): String {
    val what = t.binding?.let { "binding $it of lane ${t.lane}" } ?: "the data of lane ${t.lane}"
    return "Replace $what with $from? The current data is swapped out only when the whole file is in; " +
        "a failure or a cancel leaves it as it is."
}

/** What a data action did, for [transferText]. */
enum class DataVerb(val text: String) {
    EXPORTED("exported"),
    IMPORTED("imported"),
    BACKED_UP("backed up"),
    RESTORED("restored"),
}

/** `Lane: exported lane feature-x (orders: 1200 rows, cache: 3 keys, events: 9 records; 1.5 MB, 0.4s) to /tmp/x.lanedata.` */
fun transferText(verb: DataVerb, r: DataTransferResult): String {
    fun unit(kind: String) = when (kind) {
        DataKind.MYSQL -> "rows"
        DataKind.KAFKA -> "records"
        else -> "keys"
    }
    val parts = r.bindings.map { "${it.binding}: ${it.items} ${unit(it.kind)}" }
    val moved = "${parts.joinToString(", ")}${if (parts.isNotEmpty()) "; " else ""}${sizeText(r.bytes)}, ${oneDecimal(r.seconds)}s"
    val where = if (verb == DataVerb.EXPORTED || verb == DataVerb.BACKED_UP) "to" else "from"
    val notes = if (r.notes.isNotEmpty()) " Left out: ${r.notes.joinToString("; ")}." else ""
    return "Lane: ${verb.text} lane ${r.lane} ($moved) $where ${r.file}.$notes"
}

/** Whether a failed import or restore may be retried with `force` (after asking). */
fun dataMayForce(u: UserError): Boolean = u.code == "not_owner"

fun dataExportArgs(t: DataTarget, path: String): DataExportArgs = DataExportArgs(t.lane, t.binding, path, null)

fun dataImportArgs(t: DataTarget, path: String, force: Boolean = false): DataImportArgs =
    DataImportArgs(t.lane, t.binding, path, force, null)

fun dataBackupArgs(lane: String): DataBackupArgs = DataBackupArgs(lane, null)

fun dataRestoreArgs(lane: String, backup: String, force: Boolean = false): DataRestoreArgs =
    DataRestoreArgs(lane, backup, force, null)

/** The messages of the data actions, word for word those of the VS Code extension. */
object DataTexts {
    const val EXPORT_WHICH = "Export the data of which lane?"
    const val IMPORT_WHICH = "Import data into which lane?"
    const val BACKUP_WHICH = "Back up the data of which lane?"
    const val RESTORE_WHICH = "Restore the data of which lane?"
    const val FILE_FILTER = "Lane data"
    const val EXPORT = "Export"
    const val IMPORT = "Import"
    const val REPLACE = "Replace"
    const val RESTORE = "Restore"
    const val BACK_UP_NOW = "Back Up Now"

    /** The failure's "what" ([errorText]) of each action. */
    const val EXPORT_WHAT = "Export Data"
    const val IMPORT_WHAT = "Import Data"
    const val BACKUP_WHAT = "Back Up Data"
    const val RESTORE_WHAT = "Restore Data"

    private fun of(t: DataTarget): String = t.binding?.let { "binding $it of " } ?: ""

    /** The save dialog's title. */
    fun exportTitle(t: DataTarget): String = "Export ${of(t)}lane ${t.lane}'s data"

    /** The open dialog's title. */
    fun importTitle(t: DataTarget): String = "Import into ${of(t)}lane ${t.lane}"

    /** The backup chooser's title. */
    fun restoreTitle(lane: String): String = "Restore lane $lane's data from…"

    /** Said when Restore finds no backup (with [BACK_UP_NOW]). */
    fun noBackups(lane: String): String = "Lane: lane $lane has no backups yet."

    /** What a restore replaces the data with, in [replaceConfirmText]. */
    fun backupOf(pick: BackupPick): String = "the backup of ${pick.label}"

    /** An owner conflict: asked before sending `force`, with [Texts.FORCE]. */
    fun replaceAnyway(message: String): String = "${plain(message)} Replace anyway?"

    /** The background task's title until the server's progress names the step. */
    fun taskTitle(verb: DataVerb, t: DataTarget): String = when (verb) {
        DataVerb.EXPORTED -> "Lane: exporting ${of(t)}lane ${t.lane}'s data"
        DataVerb.IMPORTED -> "Lane: importing into ${of(t)}lane ${t.lane}"
        DataVerb.BACKED_UP -> "Lane: backing up lane ${t.lane}'s data"
        DataVerb.RESTORED -> "Lane: restoring lane ${t.lane}'s data"
    }

    /** A cancelled data action; an import or restore left the lane's data as it was (the server
     * removes what it staged). */
    fun cancelled(verb: DataVerb): String = when (verb) {
        DataVerb.EXPORTED -> "Lane: $EXPORT_WHAT cancelled."
        DataVerb.BACKED_UP -> "Lane: $BACKUP_WHAT cancelled."
        DataVerb.IMPORTED -> "Lane: $IMPORT_WHAT cancelled; the lane's data stays as it was."
        DataVerb.RESTORED -> "Lane: $RESTORE_WHAT cancelled; the lane's data stays as it was."
    }
}
