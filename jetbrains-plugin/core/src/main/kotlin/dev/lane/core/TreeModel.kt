// Builds the Lanes tree from a `LaneStatus`: lanes → services → instances (the counterpart of
// vscode-extension/src/treeModel.ts, with the same ids and texts). Pure data; the plugin's tool
// window turns these nodes into Swing tree nodes and [NodeIcon]s into platform icons.

package dev.lane.core

enum class NodeKind { LANE, BASELINE, SERVICE, INSTANCE, MESSAGE, DATA, DATA_BINDING }

/** What a node's icon shows; the plugin maps each to a platform icon (VS Code: the codicon named). */
enum class NodeIcon(val codicon: String) {
    /** The active lane (debug-stackframe). */
    ACTIVE("debug-stackframe"),
    LANE("git-merge"),
    BASELINE("home"),
    HEALTHY("pass-filled"),
    WARNING("warning"),
    STARTING("loading~spin"),
    FAILED("error"),
    STOPPED("circle-slash"),
    UNKNOWN("circle-outline"),
    INFO("info"),
    NEW("add"),
    SEARCH("search"),
    SETTINGS("gear"),
    HELP("book"),
    REFRESH("refresh"),

    /** A lane's Data node, a MySQL binding (and a binding of a kind not known here). */
    DATABASE("database"),
    /** A Redis binding. */
    LAYERS("layers"),
    /** A Kafka binding. */
    BROADCAST("broadcast"),
    /** An Apollo binding. */
    SETTINGS_GEAR("settings-gear"),
}

data class TreeNode(
    /** Stable across refreshes, so the tree keeps its expansion state. */
    val id: String,
    val kind: NodeKind,
    val label: String,
    val description: String? = null,
    val tooltip: String? = null,
    val icon: NodeIcon,
    /** Shown greyed out (an expired lane). */
    val dimmed: Boolean = false,
    /** The lane this node belongs to (also set on service and instance nodes). */
    val lane: String? = null,
    val service: String? = null,
    val active: Boolean = false,
    /** The action ([LaneActions]) a double-click (or Enter) runs on this node. */
    val action: String? = null,
    /** Its last deploy failed ([DeployFailure]); shown on the row until the next deploy. */
    val failed: Boolean = false,
    val children: List<TreeNode> = emptyList(),
) {
    /** Expanded on first show: the active lane and every service. */
    val expandedByDefault: Boolean get() = children.isNotEmpty() && (active || kind == NodeKind.SERVICE)
}

/** The actions the context menu offers on a node, by action id ([LaneActions]), in menu order. */
fun nodeActions(node: TreeNode): List<String> = when (node.kind) {
    NodeKind.LANE -> listOf(
        LaneActions.SWITCH_TO, LaneActions.TREE_COPY_REQUEST, LaneActions.DEPLOY_HERE, LaneActions.EXTEND, LaneActions.DELETE,
    )
    NodeKind.BASELINE -> listOf(LaneActions.SWITCH_TO, LaneActions.TREE_COPY_REQUEST)
    NodeKind.SERVICE -> if (node.lane == BASELINE) {
        // A baseline service has no lane to move its version from, nor one to switch to.
        listOf(LaneActions.TREE_COPY_REQUEST, LaneActions.DEPLOY_HERE, LaneActions.SHOW_SERVICE_LOGS)
    } else {
        listOf(
            LaneActions.TREE_COPY_REQUEST, LaneActions.SWITCH_TO, LaneActions.DEPLOY_HERE, LaneActions.SHOW_SERVICE_LOGS,
            LaneActions.ASSIGN,
        )
    }
    // Back Up and Restore act on the whole lane (a backup holds every binding).
    NodeKind.DATA -> listOf(LaneActions.EXPORT_DATA, LaneActions.IMPORT_DATA, LaneActions.BACKUP_DATA, LaneActions.RESTORE_DATA)
    NodeKind.DATA_BINDING -> listOf(LaneActions.EXPORT_DATA, LaneActions.IMPORT_DATA)
    NodeKind.INSTANCE, NodeKind.MESSAGE -> emptyList()
}

private fun stateIcon(state: String): NodeIcon = when (state) {
    InstanceState.HEALTHY -> NodeIcon.HEALTHY
    InstanceState.STARTING -> NodeIcon.STARTING
    InstanceState.UNHEALTHY, InstanceState.CRASHED -> NodeIcon.FAILED
    InstanceState.STOPPED -> NodeIcon.STOPPED
    else -> NodeIcon.UNKNOWN
}

private fun rpmText(n: Long): String = "$n req/min"

private fun instanceNode(parentId: String, i: ServiceInfo): TreeNode = TreeNode(
    id = "$parentId/${i.addr}",
    kind = NodeKind.INSTANCE,
    label = i.addr,
    description = "${i.state} · ${rpmText(i.requestsPerMinute)}",
    tooltip = listOf("${i.service} in ${i.lane}", "version ${i.version ?: "baseline"}", "owner ${i.owner ?: "-"}")
        .joinToString("\n"),
    icon = stateIcon(i.state),
    lane = i.lane,
    service = i.service,
)

/** `build failed` for `build_failed`. */
private fun codeText(code: String): String = code.replace('_', ' ')

/** The service's last deploy failed: said on its row until the next deploy. */
private fun failedServiceNode(f: DeployFailure, id: String, rest: TreeNode? = null): TreeNode {
    val at = "${f.branch}@${f.commit.take(8)}"
    val head = "last deploy failed: ${codeText(f.error.code)} ($at)"
    return TreeNode(
        id = id,
        kind = NodeKind.SERVICE,
        label = f.service,
        description = rest?.description?.let { "$head · $it" } ?: head,
        tooltip = listOf("${f.service} in ${f.lane}: the deploy of $at failed", f.error.message, f.error.help ?: "")
            .filter { it.isNotEmpty() }
            .joinToString("\n"),
        icon = NodeIcon.FAILED,
        lane = f.lane,
        service = f.service,
        action = LaneActions.SHOW_SERVICE_LOGS,
        failed = true,
        children = rest?.children ?: emptyList(),
    )
}

private fun serviceNode(lane: String, service: String, instances: List<ServiceInfo>): TreeNode {
    val id = "lane:$lane/service:$service"
    val h = health(instances)
    val versions = instances.map { it.version ?: "baseline" }.distinct().joinToString(", ")
    val ok = h.healthy == h.total
    val rpm = perMinute(instances)
    return TreeNode(
        id = id,
        kind = NodeKind.SERVICE,
        label = service,
        description = listOf(versions, healthText(h), rpmText(rpm)).joinToString(" · "),
        tooltip = "$service in $lane\nversion $versions\n${healthText(h)}\n${rpmText(rpm)}",
        icon = if (ok) NodeIcon.HEALTHY else NodeIcon.WARNING,
        lane = lane,
        service = service,
        // One instance: its row would repeat the service's; show instances only when there are several.
        children = if (instances.size > 1) instances.map { instanceNode(id, it) } else emptyList(),
    )
}

private fun servicesOf(lane: String, instances: List<ServiceInfo>, failures: List<DeployFailure> = emptyList()): List<TreeNode> {
    val mine = failures.filter { it.lane == lane }
    val names = (instances.map { it.service } + mine.map { it.service }).distinct().sorted()
    return names.map { s ->
        val running = instances.filter { it.service == s }
        val node = if (running.isNotEmpty()) serviceNode(lane, s, running) else null
        val failed = mine.find { it.service == s }
        if (failed != null) failedServiceNode(failed, "lane:$lane/service:$s", node) else node!!
    }
}

private fun laneNode(status: LaneStatus, lane: LaneInfo): TreeNode {
    val active = lane.id == status.activeLane
    val h = health(lane.services)
    val parts = mutableListOf<String>()
    if (active) parts.add("active")
    if (h.total > 0) parts.add(healthText(h))
    parts.add(expiryText(lane))
    parts.add(rpmText(perMinute(lane.services)))
    val children = servicesOf(lane.id, lane.services, status.deployFailures)
    return TreeNode(
        id = "lane:${lane.id}",
        kind = NodeKind.LANE,
        label = lane.id,
        description = parts.joinToString(" · "),
        tooltip = listOf(
            "lane ${lane.id}${if (active) " (active)" else ""}",
            "owner ${lane.owner}",
            "chain ${(lane.chain + BASELINE).joinToString(" → ")}",
            expiryText(lane),
        ).joinToString("\n"),
        icon = if (active) NodeIcon.ACTIVE else NodeIcon.LANE,
        dimmed = lane.expiresInSecs <= 0,
        lane = lane.id,
        active = active,
        children = children.ifEmpty { listOf(messageNode("lane:${lane.id}/empty", "no personal versions yet", lane.id)) },
    )
}

private fun baselineNode(status: LaneStatus): TreeNode {
    val active = status.activeLane == BASELINE
    val h = health(status.baseline)
    val parts = mutableListOf<String>()
    if (active) parts.add("active")
    if (h.total > 0) parts.add(healthText(h))
    parts.add(rpmText(perMinute(status.baseline)))
    return TreeNode(
        id = "lane:$BASELINE",
        kind = NodeKind.BASELINE,
        label = BASELINE,
        description = parts.joinToString(" · "),
        tooltip = "The versions production runs: requests without a lane, and the fallback of every lane.",
        icon = if (active) NodeIcon.ACTIVE else NodeIcon.BASELINE,
        lane = BASELINE,
        active = active,
        children = servicesOf(BASELINE, status.baseline),
    )
}

private fun messageNode(id: String, label: String, lane: String? = null): TreeNode =
    TreeNode(id = id, kind = NodeKind.MESSAGE, label = label, icon = NodeIcon.INFO, lane = lane)

/** The tree's roots: failed deploys into lanes that are gone, every lane (sorted by id), then
 * baseline. None at all when nothing runs yet: the tool window then shows [WELCOME]. */
fun buildTree(status: LaneStatus?): List<TreeNode> {
    if (status == null) return listOf(messageNode("loading", "Waiting for lane lsp…"))
    status.backendError?.let { return listOf(messageNode("error", "lane is unavailable: ${it.message}")) }
    if (status.lanes.isEmpty() && status.baseline.isEmpty() && status.deployFailures.isEmpty()) return emptyList()
    val lanes = status.lanes.sortedBy { it.id }.map { laneNode(status, it) }
    // A failed deploy into a lane that is gone (the deploy had created it): on its own row.
    val orphans = status.deployFailures.filter { f -> status.lanes.none { it.id == f.lane } }.map { f ->
        val n = failedServiceNode(f, "failed:${f.lane}/${f.service}")
        n.copy(description = "${n.description} · into ${f.lane}")
    }
    return orphans + lanes + baselineNode(status)
}

/** One line of the empty tool window's welcome: text, and the action a click on it runs. */
data class WelcomeLine(val text: String, val action: String? = null)

/** The empty Lanes tool window (the VS Code view's welcome): the first step, a click away. */
val WELCOME: List<WelcomeLine> = listOf(
    WelcomeLine("No lanes yet. Deploy the branch you are on into a lane of your own:"),
    WelcomeLine("requests that carry the lane reach your version, every other service answers from baseline."),
    WelcomeLine("Deploy current branch to a lane", LaneActions.DEPLOY),
    WelcomeLine("Or create an empty lane first", LaneActions.CREATE),
)

/** What the server's state is, for [serverNodes]. */
enum class ServerState { STARTING, RUNNING, MISSING, STOPPED }

/**
 * The tree's roots while the server is not there to ask: not found (with where it looked and the
 * fixes, each a double-click away) or stopped. Null while it runs or starts.
 */
fun serverNodes(state: ServerState, tried: List<String>): List<TreeNode>? = when (state) {
    ServerState.MISSING -> listOf(
        messageNode("server:missing", "Server not found: no lane binary").copy(icon = NodeIcon.FAILED),
        messageNode("server:tried", "Looked in ${tried.joinToString(", ")}")
            .copy(icon = NodeIcon.SEARCH, tooltip = tried.joinToString("\n")),
        messageNode("server:settings", "Set $SERVER_PATH_SETTING_NAME…")
            .copy(icon = NodeIcon.SETTINGS, action = LaneActions.OPEN_SETTINGS),
        messageNode("server:install", "Install: cargo install --path server/cli").copy(icon = NodeIcon.HELP),
        messageNode("server:retry", "Look again").copy(icon = NodeIcon.REFRESH, action = LaneActions.RESTART_SERVER),
    )
    ServerState.STOPPED -> listOf(
        messageNode("server:failed", "lane lsp stopped: double-click to restart it (its log: Tools → Lane → Show Server Logs)")
            .copy(icon = NodeIcon.FAILED, action = LaneActions.RESTART_SERVER),
    )
    else -> null
}

// ---- the Data node (vscode-extension/src/dataModel.ts) ----------------------------------------

private fun kindIcon(kind: String): NodeIcon = when (kind) {
    DataKind.REDIS -> NodeIcon.LAYERS
    DataKind.KAFKA -> NodeIcon.BROADCAST
    DataKind.APOLLO -> NodeIcon.SETTINGS_GEAR
    else -> NodeIcon.DATABASE
}

private fun bindingNode(parentId: String, r: DataInfo): TreeNode = TreeNode(
    id = "$parentId/${r.binding}",
    kind = NodeKind.DATA_BINDING,
    label = r.binding,
    description = listOfNotNull(r.kind, r.target, r.size, r.quota).filter { it.isNotEmpty() }.joinToString(" · "),
    tooltip = listOf(
        "${r.binding} (${r.kind}) of lane ${r.lane}",
        "the lane's own copy: ${r.target}",
        "size: ${r.size ?: "unknown (no lane.toml here declares the binding, or its server did not answer)"}",
        "quota: ${r.quota ?: "-"}",
    ).joinToString("\n"),
    icon = kindIcon(r.kind),
    lane = r.lane,
)

/** The "Data" node of lane [lane]: its bindings (sorted) with kind, the lane's copy, size and
 * quota; null when the lane owns no data. */
fun dataNode(lane: String, rows: List<DataInfo>): TreeNode? {
    val mine = rows.filter { it.lane == lane }.sortedBy { it.binding }
    if (mine.isEmpty()) return null
    val id = "lane:$lane/data"
    return TreeNode(
        id = id,
        kind = NodeKind.DATA,
        label = "Data",
        description = "${mine.size} binding${if (mine.size == 1) "" else "s"}",
        tooltip = "What lane $lane owns of its data sources; removed with the lane.",
        icon = NodeIcon.DATABASE,
        lane = lane,
        children = mine.map { bindingNode(id, it) },
    )
}

/**
 * The tree with a "Data" node first under each lane that owns data (a lane whose only child was
 * the "no personal versions yet" message keeps it after the Data node). [rows] null: not asked
 * yet, the tree as it is.
 */
fun withDataNodes(roots: List<TreeNode>, rows: List<DataInfo>?): List<TreeNode> {
    if (rows.isNullOrEmpty()) return roots
    return roots.map { n ->
        val lane = n.lane
        if (n.kind != NodeKind.LANE || lane == null) return@map n
        val data = dataNode(lane, rows) ?: return@map n
        n.copy(children = listOf(data) + n.children)
    }
}
