// The project's view of `lane lsp`: the last status it pushed, whether the server runs, and the
// typed calls (through LSP4IJ's connection). The widget and the tree render what this holds; the
// actions call through it. No lane logic: every call is one of the server's commands.

package dev.lane.jetbrains

import com.intellij.openapi.Disposable
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.components.Service
import com.intellij.openapi.components.service
import com.intellij.openapi.project.Project
import com.intellij.openapi.util.Disposer
import com.redhat.devtools.lsp4ij.LanguageServerManager
import dev.lane.core.CommandCall
import dev.lane.core.CommandSpec
import dev.lane.core.Commands
import dev.lane.core.DataInfo
import dev.lane.core.DataLsArgs
import dev.lane.core.LaneDataRows
import dev.lane.core.DEFAULT_PROXY_LISTEN
import dev.lane.core.LaneProxy
import dev.lane.core.LaneServer
import dev.lane.core.LaneStatus
import dev.lane.core.NoArgs
import dev.lane.core.ProgressEvent
import dev.lane.core.ServerState
import dev.lane.core.serverNotFoundText
import dev.lane.core.newProgressToken
import dev.lane.core.progressKind
import dev.lane.core.runCommand
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CopyOnWriteArrayList

@Service(Service.Level.PROJECT)
class LaneProjectService(private val project: Project) : Disposable {
    @Volatile
    var status: LaneStatus? = null
        private set

    @Volatile
    var serverState: ServerState = ServerState.STARTING
        private set

    /** Where the binary was looked for, when it was not found. */
    @Volatile
    var missingTried: List<String> = emptyList()
        private set

    /** The `lane` binary the server runs from, once found. */
    @Volatile
    var serverBin: String? = null
        private set

    /** What the server logged (`window/logMessage`: deploy stages, build and service output), the
     * newest [MAX_LOG_LINES] lines; Show Server Logs and "Show Build Output" open it. */
    private val logLines = java.util.ArrayDeque<String>()

    @Volatile
    private var proxy: LaneProxy? = null

    private val listeners = CopyOnWriteArrayList<() -> Unit>()
    private val progress = ConcurrentHashMap<String, (ProgressEvent) -> Unit>()

    /** The rows of `lane.data.ls` for the tree's Data nodes: asked again when the status's revision
     * changes, or after an import or a restore ([reloadData]). */
    private val data = LaneDataRows(
        source = { args: DataLsArgs -> exec<DataLsArgs, List<DataInfo>>(Commands.dataLs, args) },
        changed = { changed() },
        log = { line: String -> appendLog(line) },
    )

    /** What each lane owns of its data sources; null until the server answered. */
    val dataRows: List<DataInfo>? get() = data.rows

    /** Asks `lane.data.ls` again now (a lane's data changed size, not the status's revision). */
    fun reloadData() = data.reload(status)

    /** Calls [listener] on the UI thread after every change, until [parent] is disposed. */
    fun onChange(parent: Disposable, listener: () -> Unit) {
        listeners.add(listener)
        Disposer.register(parent) { listeners.remove(listener) }
    }

    private fun changed() {
        ApplicationManager.getApplication().invokeLater({ listeners.forEach { it() } }, project.disposed)
    }

    fun acceptStatus(s: LaneStatus) {
        status = s
        serverState = ServerState.RUNNING
        changed()
        data.update(s)
    }

    /** The connection provider's lookup: [bin] found, or not found after looking in [tried]. */
    fun serverLocated(bin: String?, tried: List<String>?) {
        serverBin = bin
        missingTried = tried.orEmpty()
        if (tried != null) {
            appendLog(serverNotFoundText(tried))
            // Not waited for: the status bar and the tree say it too, with the fixes.
            ApplicationManager.getApplication().invokeLater({ notifyServerNotFound(project, tried) }, project.disposed)
            serverState = ServerState.MISSING
            changed()
        }
    }

    fun serverStarted() {
        serverState = ServerState.RUNNING
        changed()
        // The first status; later ones are pushed.
        refresh()
    }

    fun serverStopped() {
        if (serverState != ServerState.MISSING) serverState = ServerState.STOPPED
        changed()
    }

    /** Starts `lane lsp` for this project even when no mapped file is open. */
    fun start() {
        LanguageServerManager.getInstance(project)
            .start(LANE_SERVER_ID, LanguageServerManager.StartOptions().setForceStart(true).setForceRestart(false))
    }

    /** Stops and starts `lane lsp` (after a settings change, or when it stopped). */
    fun restart() {
        serverState = ServerState.STARTING
        changed()
        LanguageServerManager.getInstance(project)
            .start(LANE_SERVER_ID, LanguageServerManager.StartOptions().setForceStart(true).setForceRestart(true))
    }

    /** The running server, started if needed. */
    fun server(): CompletableFuture<LaneServer> =
        if (serverState == ServerState.MISSING) {
            CompletableFuture.failedFuture(IllegalStateException(serverNotFoundText(missingTried)))
        } else {
            runningServer()
        }

    private fun runningServer(): CompletableFuture<LaneServer> =
        LanguageServerManager.getInstance(project).getLanguageServer(LANE_SERVER_ID).thenCompose { item ->
            // getInitializedServer: the server may have been stopped since and must start again.
            item?.initializedServer ?: CompletableFuture.failedFuture(IllegalStateException("lane lsp is not running"))
        }.thenApply { ls ->
            ls as? LaneServer ?: throw IllegalStateException("lane lsp is not running")
        }

    /** `lane/status`, recorded like a pushed one. */
    fun refresh(): CompletableFuture<LaneStatus> =
        server().thenCompose { it.laneStatus() }.thenApply { it.also(::acceptStatus) }

    fun <A : Any, R> exec(spec: CommandSpec<A, *>, args: A?): CompletableFuture<R> =
        server().thenCompose { runCommand<A, R>(it, spec, args).result }

    fun <R> exec(spec: CommandSpec<NoArgs, *>): CompletableFuture<R> = exec<NoArgs, R>(spec, null)

    /**
     * A command with work-done progress (a deploy, a data export, import, backup or restore) under
     * a token of its own: [onProgress] gets its events
     * (from [LaneLanguageClient.notifyProgress]); the returned call can be cancelled.
     */
    fun <A : Any, R> execWithProgress(
        spec: CommandSpec<A, *>,
        args: A,
        onProgress: (ProgressEvent) -> Unit,
    ): CompletableFuture<CommandCall<R>> {
        val token = newProgressToken(progressKind(spec))
        progress[token] = onProgress
        return server().thenApply { server ->
            val call = runCommand<A, R>(server, spec, args, token)
            // The `end` report follows the answer; keep routing it for a moment.
            call.result.whenComplete { _, _ ->
                CompletableFuture.delayedExecutor(5, java.util.concurrent.TimeUnit.SECONDS).execute { progress.remove(token) }
            }
            call
        }.whenComplete { _, e -> if (e != null) progress.remove(token) }
    }

    fun appendLog(line: String) {
        synchronized(logLines) {
            logLines.addLast(line)
            while (logLines.size > MAX_LOG_LINES) logLines.removeFirst()
        }
    }

    fun logText(): String = synchronized(logLines) { logLines.joinToString("\n", postfix = "\n") }

    /** Whether the `lane proxy` this project started runs, and where it listens. */
    val proxyRunning: Boolean get() = proxy?.running == true
    val proxyListen: String get() = proxy?.listen ?: DEFAULT_PROXY_LISTEN

    /** Starts `lane proxy` (plain requests sent with `HTTP_PROXY` then follow Switch Traffic). */
    fun startProxy(): CompletableFuture<Unit> {
        val bin = serverBin ?: return CompletableFuture.failedFuture(IllegalStateException(serverNotFoundText(missingTried)))
        val p = proxy ?: LaneProxy(
            bin = bin,
            cwd = project.basePath?.let { java.io.File(it) },
            listen = DEFAULT_PROXY_LISTEN,
            onLine = { line: String -> appendLog("[lane proxy] $line") },
            onChange = { changed() },
        ).also { proxy = it }
        return p.start()
    }

    fun stopProxy() {
        proxy?.stop()
    }

    fun ownsProgress(token: String): Boolean = progress.containsKey(token)

    fun acceptProgress(event: ProgressEvent) {
        progress[event.token]?.invoke(event)
    }

    override fun dispose() {
        proxy?.stop()
        listeners.clear()
        progress.clear()
    }

    companion object {
        const val MAX_LOG_LINES = 5000

        fun getInstance(project: Project): LaneProjectService = project.service()
    }
}
