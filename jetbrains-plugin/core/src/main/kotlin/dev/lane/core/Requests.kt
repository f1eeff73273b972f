// Builds ready-to-run `curl` and `grpcurl` commands that reach the workspace's service through the
// router with the active lane's header (the counterpart of vscode-extension/src/request.ts). Pure.

package dev.lane.core

data class RequestTarget(
    /** The router's address, `host:port`. */
    val router: String,
    /** The header that carries the lane id. */
    val header: String,
    /** The lane to send; `baseline` sends no header. */
    val lane: String,
)

data class Requests(
    val curl: String,
    /** Only for gRPC services. */
    val grpcurl: String? = null,
)

private val PLAIN_WORD = Regex("^[A-Za-z0-9_@%+=:,./-]+$")

/** Quotes a word for a POSIX shell when it needs quoting. */
fun shellQuote(word: String): String =
    if (PLAIN_WORD.matches(word)) word else "'" + word.replace("'", "'\\''") + "'"

private fun splitHostPort(addr: String): Pair<String, String> {
    val i = addr.lastIndexOf(':')
    return if (i < 0) addr to "80" else addr.substring(0, i) to addr.substring(i + 1)
}

private fun isLoopback(host: String): Boolean =
    host == "localhost" || host == "[::1]" || host.startsWith("127.")

/**
 * The service's router host and URL: the server sends them (`host`, `url`); they are derived from the
 * service id (`demo.b` → `b.demo.localhost`) only if it did not.
 */
fun serviceAddress(ws: WorkspaceInfo, router: String): Pair<String, String> {
    val port = splitHostPort(router).second
    var host = ws.host
    if (host.isNullOrEmpty()) {
        val parts = (ws.service ?: "").split(".")
        val app = parts.getOrNull(0)
        val proc = parts.getOrNull(1)
        require(!app.isNullOrEmpty() && !proc.isNullOrEmpty()) { "the workspace has no service (no valid lane.toml)" }
        host = "$proc.$app.localhost:$port"
    }
    return host to (ws.url ?: "http://$host/")
}

fun buildRequests(ws: WorkspaceInfo, t: RequestTarget): Requests {
    val (host, url) = serviceAddress(ws, t.router)
    val (routerHost, routerPort) = splitHostPort(t.router)
    val name = splitHostPort(host).first
    val headerArgs = if (t.lane == BASELINE) emptyList() else listOf("-H", "${t.header}: ${t.lane}")
    // `*.localhost` resolves to loopback; a router elsewhere is reached with --connect-to.
    val connect = if (isLoopback(routerHost)) emptyList() else listOf("--connect-to", "$name:$routerPort:$routerHost:$routerPort")
    val curl = listOf("curl", "-sS", "-i") + headerArgs + connect + url
    val grpcurl = if (ws.protocol == "grpc") {
        (listOf("grpcurl", "-plaintext", "-authority", name) + headerArgs + listOf(t.router, "list"))
            .joinToString(" ") { shellQuote(it) }
    } else {
        null
    }
    return Requests(curl.joinToString(" ") { shellQuote(it) }, grpcurl)
}

/** The text put on the clipboard: the curl command, and the grpcurl one for gRPC services. */
fun clipboardText(r: Requests): String = if (r.grpcurl != null) "${r.grpcurl}\n${r.curl}\n" else "${r.curl}\n"

/** Requests and what they target. */
data class CopiedRequest(val requests: Requests, val target: RequestTarget, val service: String)

/**
 * The request that reaches the version a deploy just made, whatever lane the developer's traffic
 * is on: the deploy's lane header ([header] overrides the server's) via the router it names.
 */
fun deployedRequests(result: DeployResult, protocol: String?, header: String? = null): CopiedRequest {
    val router = requireNotNull(result.router) { "the router is not running" }
    val ws = WorkspaceInfo(
        folder = "",
        service = result.service,
        protocol = protocol,
        branch = result.branch,
        commit = result.commit,
        error = null,
        host = result.host,
        url = result.url,
    )
    val target = RequestTarget(router, header?.takeIf { it.isNotBlank() } ?: result.laneHeader, result.lane)
    return CopiedRequest(buildRequests(ws, target), target, result.service)
}

/** What a copy says: which service and lane the request targets, and with which header. */
fun copiedText(c: CopiedRequest): String {
    val t = c.target
    val where = if (t.lane == BASELINE) "${c.service} on baseline (no lane header)" else "${c.service} in lane ${t.lane} (header ${t.header}: ${t.lane})"
    return "Lane: copied a request to $where: ${c.requests.grpcurl ?: c.requests.curl}"
}
