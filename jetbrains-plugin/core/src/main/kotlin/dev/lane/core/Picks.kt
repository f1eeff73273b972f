// The items of the lane choosers (the counterpart of vscode-extension/src/picks.ts). Pure; the
// plugin shows them in a popup list.

package dev.lane.core

data class LanePick(
    val label: String,
    val icon: NodeIcon,
    val description: String? = null,
    val detail: String? = null,
    /** The lane id; null for "New lane…" (asks for the id), set for a proposed new lane. */
    val lane: String? = null,
    val isNew: Boolean = false,
)

data class PickOptions(
    val activeLane: String,
    val includeBaseline: Boolean = false,
    val includeNew: Boolean = false,
    /** A new lane to propose first (e.g. named after the branch), unless it exists. */
    val suggestNew: SuggestedLane? = null,
)

/** A proposed new lane and why it is proposed (`named after branch feature/login`). */
data class SuggestedLane(val lane: String, val why: String)

private val NOT_ID = Regex("[^a-z0-9]+")

/** A lane id from a branch name: `feature/login` → `feature-login` (lowercase, runs of other
 * characters → `-`, at most 40 characters); null when nothing usable is left. */
fun laneNameFromBranch(branch: String?): String? {
    if (branch.isNullOrEmpty() || branch == "HEAD") return null
    val id = NOT_ID.replace(branch.lowercase(), "-").trim('-').take(40).trimEnd('-')
    return if (id.isNotEmpty() && id != BASELINE) id else null
}

/** The proposal for a deploy of [ws]: a lane named after its branch. */
fun suggestedLane(ws: WorkspaceInfo): SuggestedLane? =
    laneNameFromBranch(ws.branch)?.let { SuggestedLane(it, "named after branch ${ws.branch}") }

const val NEW_LANE_LABEL = "New lane…"

/** The active lane first, then the others by id; `baseline` and "New lane…" when asked for. */
fun lanePicks(lanes: List<LaneInfo>, o: PickOptions): List<LanePick> {
    val sorted = lanes.sortedWith(compareBy<LaneInfo> { it.id != o.activeLane }.thenBy { it.id })
    val picks = sorted.map { l ->
        val h = health(l.services)
        val parts = listOfNotNull(
            if (l.id == o.activeLane) "active" else null,
            if (h.total > 0) healthText(h) else "empty",
            expiryText(l),
        )
        val services = l.services.map { "${it.service} ${it.version ?: ""}".trim() }.distinct()
        LanePick(
            label = l.id,
            icon = if (l.id == o.activeLane) NodeIcon.ACTIVE else NodeIcon.LANE,
            description = parts.joinToString(" · "),
            detail = if (services.isNotEmpty()) services.joinToString(", ") else "owner ${l.owner}",
            lane = l.id,
        )
    }.toMutableList()
    if (o.includeBaseline) {
        picks.add(
            LanePick(
                label = BASELINE,
                icon = NodeIcon.BASELINE,
                description = if (o.activeLane == BASELINE) "active · no lane header" else "no lane header",
                lane = BASELINE,
            ),
        )
    }
    if (o.includeNew) picks.add(LanePick(label = NEW_LANE_LABEL, icon = NodeIcon.NEW, isNew = true))
    val suggested = o.suggestNew
    if (suggested != null && lanes.none { it.id == suggested.lane }) {
        picks.add(0, LanePick(label = "New lane ${suggested.lane}", icon = NodeIcon.NEW, description = suggested.why, lane = suggested.lane, isNew = true))
    }
    return picks
}
