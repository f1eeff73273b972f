// Builds the Lanes tree from a `LaneStatus`: lanes → services → instances (the counterpart of
// vscode-extension/src/treeModel.ts, with the same ids and texts). Pure data; the plugin's tool
// window turns these nodes into Swing tree nodes and [NodeIcon]s into platform icons.

package dev.lane.core

enum class NodeKind { LANE, BASELINE, SERVICE, INSTANCE, MESSAGE }

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
    val children: List<TreeNode> = emptyList(),
) {
    /** Expanded on first show: the active lane and every service. */
    val expandedByDefault: Boolean get() = children.isNotEmpty() && (active || kind == NodeKind.SERVICE)
}

/** The actions the context menu offers on a node, by action id ([LaneActions]). */
fun nodeActions(node: TreeNode): List<String> = when (node.kind) {
    NodeKind.LANE -> listOf(LaneActions.SWITCH_TO, LaneActions.EXTEND, LaneActions.DELETE)
    NodeKind.BASELINE -> listOf(LaneActions.SWITCH_TO)
    NodeKind.SERVICE -> if (node.lane == BASELINE) emptyList() else listOf(LaneActions.ASSIGN)
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

private fun servicesOf(lane: String, instances: List<ServiceInfo>): List<TreeNode> =
    instances.map { it.service }.distinct().sorted().map { s -> serviceNode(lane, s, instances.filter { it.service == s }) }

private fun laneNode(status: LaneStatus, lane: LaneInfo): TreeNode {
    val active = lane.id == status.activeLane
    val h = health(lane.services)
    val parts = mutableListOf<String>()
    if (active) parts.add("active")
    if (h.total > 0) parts.add(healthText(h))
    parts.add(expiryText(lane))
    parts.add(rpmText(perMinute(lane.services)))
    val children = servicesOf(lane.id, lane.services)
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

/** The tree's roots: every lane (sorted by id), then baseline. */
fun buildTree(status: LaneStatus?): List<TreeNode> {
    if (status == null) return listOf(messageNode("loading", "Waiting for lane lsp…"))
    status.backendError?.let { return listOf(messageNode("error", "lane is unavailable: ${it.message}")) }
    val lanes = status.lanes.sortedBy { it.id }.map { laneNode(status, it) }
    return lanes + baselineNode(status)
}
