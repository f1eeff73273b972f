// `lane proxy`, run by the plugin (Tools → Lane → Start Proxy / Stop Proxy): a local HTTP proxy that
// adds the active lane's header to the requests sent through it (`HTTP_PROXY=http://127.0.0.1:4081`),
// so plain requests follow Switch Traffic too. The counterpart of vscode-extension/src/proxy.ts;
// plain JVM (no IntelliJ class), so the wire test runs it against the real binary.

package dev.lane.core

import java.io.File
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException

/** `lane proxy`'s own default address. */
const val DEFAULT_PROXY_LISTEN = "127.0.0.1:4081"

/** The command line that runs the proxy on [listen]. */
fun proxyCommand(bin: String, listen: String = DEFAULT_PROXY_LISTEN): List<String> = listOf(bin, "proxy", "--listen", listen)

class LaneProxy(
    private val bin: String,
    /** Added to this process's environment. */
    private val env: Map<String, String> = emptyMap(),
    private val cwd: File? = null,
    val listen: String = DEFAULT_PROXY_LISTEN,
    /** Every line the proxy prints, and its exit. */
    private val onLine: (String) -> Unit = {},
    /** Called when it starts or stops running. */
    private val onChange: () -> Unit = {},
) {
    @Volatile
    private var process: Process? = null

    @Volatile
    var running: Boolean = false
        private set

    /** Starts it; completes once it listens, fails with what it said if it exits first or
     * [timeoutMs] passes. Starting a running proxy completes at once. */
    @Synchronized
    fun start(timeoutMs: Long = 20_000): CompletableFuture<Unit> {
        if (process != null) return CompletableFuture.completedFuture(Unit)
        val pb = ProcessBuilder(proxyCommand(bin, listen)).redirectErrorStream(true)
        cwd?.let { pb.directory(it) }
        pb.environment().putAll(env)
        val p = pb.start()
        process = p
        val started = CompletableFuture<Unit>()
        val said = StringBuffer()
        Thread({
            p.inputStream.bufferedReader().forEachLine { line ->
                if (line.isBlank()) return@forEachLine
                said.append(line).append('\n')
                onLine(line)
                if (!running && line.startsWith("lane proxy on ")) {
                    running = true
                    onChange()
                    started.complete(Unit)
                }
            }
            val code = p.waitFor()
            val was = running
            running = false
            synchronized(this) { if (process === p) process = null }
            onLine("lane proxy exited (code $code)")
            if (was) onChange()
            started.completeExceptionally(IllegalStateException("lane proxy exited: ${said.toString().trim().ifEmpty { "code $code" }}"))
        }, "lane-proxy").apply { isDaemon = true }.start()
        return started.orTimeout(timeoutMs, TimeUnit.MILLISECONDS).exceptionallyCompose { e ->
            if (e is TimeoutException || e.cause is TimeoutException) {
                p.destroy()
                CompletableFuture.failedFuture(
                    IllegalStateException("lane proxy did not start within ${timeoutMs / 1000}s: ${said.toString().trim()}"),
                )
            } else {
                CompletableFuture.failedFuture(e)
            }
        }
    }

    /** Stops it (SIGTERM); [running] turns false once it has exited. */
    fun stop() {
        process?.destroy()
    }
}

/** What Start Proxy says once it runs: where, and which requests follow. */
fun proxyStartedText(listen: String, activeLane: String): String =
    "Lane: the lane proxy runs on $listen. Requests sent with HTTP_PROXY=http://$listen enter the active lane " +
        "($activeLane) and follow Switch Traffic."

/** The clipboard text of Start Proxy's "Copy HTTP_PROXY". */
fun httpProxyExport(listen: String): String = "export HTTP_PROXY=http://$listen\n"

/** What Switch Traffic says it did: which requests now enter the lane, and which do not. */
fun switchText(lane: String, proxyRunning: Boolean, listen: String = DEFAULT_PROXY_LISTEN): String {
    if (lane == BASELINE) return "Lane: your requests enter baseline again (no lane header)."
    val via = "HTTP_PROXY=http://$listen"
    return if (proxyRunning) {
        "Lane: requests sent through the lane proxy ($via) and requests copied from Lane now enter $lane; " +
            "requests sent without the proxy still reach baseline."
    } else {
        "Lane: requests copied from Lane (Copy Request) now enter $lane. Other requests still reach baseline: " +
            "start the lane proxy and send them with $via to make them follow."
    }
}
