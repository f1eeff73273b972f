// The plugin's actions: their ids and titles (the VS Code extension's command ids and titles), the
// argument objects they send, and every message they show (the texts of
// vscode-extension/src/commands.ts). Pure: the plugin's actions only ask, call and show these.

package dev.lane.core

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

    /** The tree's context action: switch to the selected lane. */
    const val SWITCH_TO = "lane.tree.switchTo"

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
        ActionSpec(ASSIGN, "Assign Version", "Move a personal version from one lane to another"),
        ActionSpec(COPY_REQUEST, "Copy Request With Lane Header", "Copy a curl command that reaches the service in the active lane"),
        ActionSpec(REFRESH, "Refresh", "Ask lane lsp for the status now"),
        ActionSpec(RESTART_SERVER, "Restart Server", "Restart lane lsp"),
    )
    // VS Code's `lane.showLogs` has no entry here: in the IDE, the server's log is LSP4IJ's
    // Language Servers console.

    val TREE: List<ActionSpec> = listOf(
        ActionSpec(SWITCH_TO, "Switch Traffic To This Lane", "Send your requests into this lane"),
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

/** Every message the actions show, word for word those of the VS Code extension. */
object Texts {
    const val CHOOSE_LANE = "Choose a lane"
    const val NEW_LANE_TITLE = "New lane"
    const val LANE_ID_PROMPT = "Lane id: lowercase letters, digits and `-`, 1–40 characters"
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
    const val FORCE = "Force"
    const val DELETE = "Delete"
    const val FORCE_DELETE = "Force Delete"
    const val NOTHING_TO_DEPLOY = "Lane: no workspace folder has a valid `lane.toml` to deploy."
    const val NOTHING_TO_MOVE = "Lane: no lane has a personal version to move."
    const val NO_SERVICE = "Lane: no workspace folder has a service (`lane.toml`)."
    const val NO_ROUTER = "Lane: the router is not running."
    const val WAITING = "Waiting for `lane lsp`…"
    const val NOT_FOUND_TEXT = "lane: not found"
    const val NOT_FOUND_TOOLTIP = "The `lane` binary was not found. Set its path in Settings → Tools → Lane."
    const val STOPPED_TEXT = "lane: stopped"
    const val STOPPED_TOOLTIP = "`lane lsp` stopped. Click to restart it; its log is in the Language Servers console."
    const val TOOL_WINDOW = "Lanes"

    fun cancelled(what: String): String = "Lane: $what cancelled."
    fun deployTitle(ws: WorkspaceInfo): String = "Deploy ${ws.service} (${ws.branch ?: "no branch"}) into…"
    fun deployAnyway(message: String): String = "$message Deploy anyway?"
    fun deployed(r: DeployResult): String =
        "Lane: deployed ${r.service} (${r.branch}@${r.commit.take(8)}) into ${r.lane}: ${r.state}."
    /** The buttons after a deploy: switching is offered when the lane is not the active one. */
    fun afterDeploy(r: DeployResult, activeLane: String): List<String> =
        if (r.lane != activeLane) listOf(SWITCH_TRAFFIC_TO_IT, COPY_REQUEST) else listOf(COPY_REQUEST)
    fun switched(activeLane: String): String = "Lane: your requests now enter $activeLane"
    fun stackOn(lane: String): String = "Stack $lane on a parent lane?"
    fun owner(owner: String): String = "owner $owner"
    fun created(id: String, ttl: String): String = "Lane: created $id (expires in $ttl)."
    fun confirmDelete(lane: String): String = "Delete lane $lane with everything it runs?"
    fun deleteAnyway(message: String): String = "$message Delete anyway?"
    fun deleted(lane: String): String = "Lane: deleted $lane"
    fun extendTitle(lane: String): String = "Extend $lane"
    fun extended(l: LaneInfo): String = "Lane: ${l.id} now expires in ${Math.round(l.expiresInSecs / 3600.0)}h"
    fun moveTo(service: String, from: String): String = "Move $service from $from to…"
    fun moved(r: AssignResult): String = "Lane: moved ${r.service} from ${r.from} to ${r.to}."
    fun copied(r: Requests): String = "Lane: copied `${r.grpcurl ?: r.curl}`"
    /** The title of a deploy's progress (the server's `begin` title). */
    fun progressTitle(serverTitle: String): String = "Lane: $serverTitle"
}
