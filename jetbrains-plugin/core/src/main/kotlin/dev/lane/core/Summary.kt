// Pure functions that turn a `LaneStatus` into what the status-bar widget shows (the counterpart of
// vscode-extension/src/summary.ts, with the same texts). The server computes health and traffic;
// this only formats them.

package dev.lane.core

/**
 * What starts the status-bar text. Not a glyph such as U+26D9, which renders as an empty box where
 * the fonts lack it (common on Linux; the VS Code extension uses its `$(git-merge)` codicon
 * instead): the widget shows the Lanes tool window's icon beside this text.
 */
const val LANE_PREFIX = "Lane:"

data class Health(val healthy: Long, val total: Long)

fun health(instances: List<ServiceInfo>): Health =
    Health(instances.count { it.state == InstanceState.HEALTHY }.toLong(), instances.size.toLong())

fun healthText(h: Health): String = "${h.healthy}/${h.total} healthy"

fun healthText(status: LaneStatus): String = healthText(Health(status.healthy, status.total))

fun findLane(status: LaneStatus, id: String): LaneInfo? = status.lanes.find { it.id == id }

/** The instances that serve lane [id] itself (`baseline`: the baseline instances). */
fun laneInstances(status: LaneStatus, id: String): List<ServiceInfo> =
    if (id == BASELINE) status.baseline else findLane(status, id)?.services ?: emptyList()

/** Requests per minute, summed over instances. */
fun perMinute(instances: List<ServiceInfo>): Long = instances.sumOf { it.requestsPerMinute }

/**
 * The service the status bar talks about: the one whose folder holds [path] (the file being edited,
 * or the project's directory; the innermost folder wins, as a monorepo's services sit below its
 * root), else the first.
 */
fun pickWorkspace(status: LaneStatus, path: String? = null): WorkspaceInfo? {
    fun holds(folder: String): Boolean =
        path != null && (path == folder || path.startsWith(if (folder.endsWith("/")) folder else "$folder/"))
    var best: WorkspaceInfo? = null
    for (w in status.workspaces) {
        if (holds(w.folder) && (best == null || w.folder.length > best.folder.length)) best = w
    }
    return best ?: status.workspaces.firstOrNull()
}

/** `5h 12m`, `3d 4h`, `45s`: at most the two largest units. */
fun formatDuration(secs: Long): String {
    var rest = maxOf(0L, secs)
    val parts = mutableListOf<String>()
    for ((name, size) in listOf("d" to 86400L, "h" to 3600L, "m" to 60L, "s" to 1L)) {
        val n = rest / size
        rest -= n * size
        if (n > 0) parts.add("$n$name") else if (parts.isNotEmpty()) break
        if (parts.size == 2) break
    }
    return if (parts.isEmpty()) "0s" else parts.joinToString(" ")
}

/** `expires in 5h 12m` or `expired`. */
fun expiryText(lane: LaneInfo): String =
    if (lane.expiresInSecs > 0) "expires in ${formatDuration(lane.expiresInSecs)}" else "expired"

/**
 * The status-bar text: `Lane: feature-x · feat/login · 3/3 healthy` (what the VS Code extension's
 * Show Status popup says). The branch is left out outside a git repository, the health when the
 * active lane runs nothing.
 */
fun statusBarText(status: LaneStatus?, folder: String? = null): String {
    if (status == null) return "Lane…"
    status.backendError?.let { return "lane: ${it.code}" }
    val parts = mutableListOf("$LANE_PREFIX ${status.activeLane}")
    pickWorkspace(status, folder)?.branch?.takeIf { it.isNotEmpty() }?.let { parts.add(it) }
    if (status.total > 0) parts.add(healthText(status))
    return parts.joinToString(" · ")
}

/** Whether the status bar should warn: the backend is unreachable or an instance is unhealthy. */
fun statusBarWarns(status: LaneStatus?): Boolean =
    status != null && (status.backendError != null || status.healthy < status.total)

/** The tooltip as Markdown: workspace, active lane with its chain, services, health and traffic. */
fun statusBarTooltip(status: LaneStatus?, folder: String? = null): String {
    if (status == null) return "Waiting for `lane lsp`…"
    val paragraphs = mutableListOf<String>()
    status.backendError?.let { e ->
        paragraphs.add("**lane is unavailable** (${e.code}): ${escapeMd(e.message)}")
        e.help?.takeIf { it.isNotEmpty() }?.let { paragraphs.add(escapeMd(it)) }
        return paragraphs.joinToString("\n\n")
    }
    val ws = pickWorkspace(status, folder)
    if (ws != null) {
        val commit = ws.commit?.takeIf { it.isNotEmpty() }?.let { " (${it.take(8)})" } ?: ""
        val at = ws.branch?.takeIf { it.isNotEmpty() }?.let { " on `$it`$commit" } ?: ""
        if (!ws.service.isNullOrEmpty()) {
            paragraphs.add("Service `${ws.service}`$at")
        } else if (!ws.error.isNullOrEmpty()) {
            paragraphs.add("`lane.toml`: ${escapeMd(ws.error)}")
        }
    }
    val active = status.activeLane
    val lane = findLane(status, active)
    if (active == BASELINE) {
        paragraphs.add("Your requests enter **baseline** (no lane header).")
    } else if (lane != null) {
        val chain = lane.chain.drop(1).joinToString("") { " → $it" }
        paragraphs.add("Your requests enter lane **$active**$chain → baseline")
        paragraphs.add("Owner ${escapeMd(lane.owner)}, ${expiryText(lane)}")
    } else {
        paragraphs.add("Your requests enter lane **$active**, which does not exist (any more).")
    }
    val instances = laneInstances(status, active)
    if (instances.isNotEmpty()) {
        val rows = mutableListOf("| service | version | health | req/min |", "| --- | --- | --- | ---: |")
        for (i in instances) {
            rows.add("| ${i.service} | ${escapeMd(i.version ?: "baseline")} | ${i.state} | ${i.requestsPerMinute} |")
        }
        paragraphs.add(rows.joinToString("\n"))
        paragraphs.add("${healthText(status)}, ${perMinute(instances)} req/min")
    }
    val router = status.router ?: "not running"
    paragraphs.add("${status.lanes.size} lane(s) · router $router · backend ${status.backend}")
    paragraphs.add("Click to switch traffic.")
    return paragraphs.joinToString("\n\n")
}

private val MD_SPECIAL = Regex("""([\\`*_{}\[\]()#+\-.!|<>])""")

fun escapeMd(s: String): String = MD_SPECIAL.replace(s) { "\\" + it.value }

/** The line about `lane proxy` the status-bar tooltip ends with: whether plain requests follow. */
fun proxyLine(running: Boolean, listen: String): String =
    if (running) {
        "Lane proxy: running on $listen (requests sent with HTTP\\_PROXY follow the active lane)"
    } else {
        "Lane proxy: not running (only requests copied from Lane carry the lane; run Tools → Lane → Start Proxy)"
    }

/** Columns padded to their widest cell, two spaces apart. */
private fun table(rows: List<List<String>>): List<String> {
    val widths = rows[0].indices.map { c -> rows.maxOf { it.getOrElse(c) { "" }.length } }
    return rows.map { r -> r.mapIndexed { c, cell -> if (c == r.size - 1) cell else cell.padEnd(widths[c]) }.joinToString("  ").trimEnd() }
}

/** The status as plain text (Show Status writes it to its console): what the tooltip says. */
fun statusPlainText(status: LaneStatus, folder: String? = null): String {
    val lines = mutableListOf<String>()
    status.backendError?.let { e ->
        lines.add("lane is unavailable (${e.code}): ${e.message}")
        e.help?.takeIf { it.isNotEmpty() }?.let { lines.add(it) }
        return lines.joinToString("\n")
    }
    val ws = pickWorkspace(status, folder)
    if (!ws?.service.isNullOrEmpty()) {
        val commit = ws!!.commit?.takeIf { it.isNotEmpty() }?.let { " (${it.take(8)})" } ?: ""
        val at = ws.branch?.takeIf { it.isNotEmpty() }?.let { " on branch $it$commit" } ?: ""
        lines.add("Service ${ws.service}$at")
    } else if (!ws?.error.isNullOrEmpty()) {
        lines.add("lane.toml: ${ws!!.error}")
    }
    val active = status.activeLane
    val lane = findLane(status, active)
    when {
        active == BASELINE -> lines.add("Your requests enter baseline (no lane header).")
        lane != null -> {
            lines.add("Your requests enter lane $active${lane.chain.drop(1).joinToString("") { " → $it" }} → baseline")
            lines.add("Owner ${lane.owner}, ${expiryText(lane)}")
        }
        else -> lines.add("Your requests enter lane $active, which does not exist (any more).")
    }
    val instances = laneInstances(status, active)
    if (instances.isNotEmpty()) {
        lines.add("")
        val rows = listOf(listOf("service", "version", "health", "req/min")) +
            instances.map { listOf(it.service, it.version ?: "baseline", it.state, it.requestsPerMinute.toString()) }
        lines.addAll(table(rows))
        lines.add("")
        lines.add("${healthText(status)}, ${perMinute(instances)} req/min")
    }
    for (f in status.deployFailures) {
        lines.add("Last deploy of ${f.service} into ${f.lane} failed: ${f.error.message.lineSequence().first()}")
    }
    lines.add("${status.lanes.size} lane(s) · router ${status.router ?: "not running"} · backend ${status.backend}")
    return lines.joinToString("\n")
}

/**
 * The tooltip as HTML for the IDE's status bar (which renders HTML, not Markdown): the same text as
 * [statusBarTooltip] (then [proxy], the [proxyLine], when given), converted by [markdownToHtml].
 */
fun statusBarTooltipHtml(status: LaneStatus?, folder: String? = null, proxy: String? = null): String {
    val md = statusBarTooltip(status, folder) + if (status != null && proxy != null) "\n\n$proxy" else ""
    return "<html>" + markdownToHtml(md) + "</html>"
}

/**
 * The Markdown that [statusBarTooltip] writes, as HTML: paragraphs, `**bold**`, `` `code` ``,
 * backslash escapes and pipe tables. Every character of the text is HTML-escaped.
 */
fun markdownToHtml(md: String): String = md.split("\n\n").joinToString("") { para ->
    val lines = para.split("\n")
    if (lines.size >= 2 && lines.all { it.startsWith("|") } && lines[1].startsWith("| ---")) {
        val header = cells(lines[0]).joinToString("") { "<th align=\"left\">${inline(it)}</th>" }
        val body = lines.drop(2).joinToString("") { row ->
            "<tr>" + cells(row).joinToString("") { "<td>${inline(it)}</td>" } + "</tr>"
        }
        "<table><tr>$header</tr>$body</table>"
    } else {
        "<p>" + lines.joinToString("<br>") { inline(it) } + "</p>"
    }
}

/** The cells of a table row `| a | b \| c |` (escaped pipes stay in their cell). */
private fun cells(row: String): List<String> {
    val out = mutableListOf<String>()
    val cur = StringBuilder()
    var i = 0
    val inner = row.trim().removePrefix("|").removeSuffix("|")
    while (i < inner.length) {
        val c = inner[i]
        if (c == '\\' && i + 1 < inner.length) {
            cur.append(c).append(inner[i + 1])
            i += 2
            continue
        }
        if (c == '|') {
            out.add(cur.toString().trim())
            cur.clear()
        } else {
            cur.append(c)
        }
        i++
    }
    out.add(cur.toString().trim())
    return out
}

/** Inline Markdown (escapes, bold, code) as HTML. */
private fun inline(text: String): String {
    val out = StringBuilder()
    var bold = false
    var code = false
    var i = 0
    while (i < text.length) {
        val c = text[i]
        when {
            c == '\\' && i + 1 < text.length && !code -> {
                out.append(escapeHtml(text[i + 1].toString()))
                i += 2
                continue
            }
            c == '`' -> {
                out.append(if (code) "</code>" else "<code>")
                code = !code
            }
            c == '*' && !code && text.startsWith("**", i) -> {
                out.append(if (bold) "</b>" else "<b>")
                bold = !bold
                i += 2
                continue
            }
            else -> out.append(escapeHtml(c.toString()))
        }
        i++
    }
    if (code) out.append("</code>")
    if (bold) out.append("</b>")
    return out.toString()
}

fun escapeHtml(s: String): String =
    s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;")
