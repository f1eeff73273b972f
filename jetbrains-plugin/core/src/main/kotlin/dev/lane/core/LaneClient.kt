// A typed client of `lane lsp` over LSP4J's JSON-RPC launcher: the custom request and notification,
// every `workspace/executeCommand` command with its argument and result types, and deploy progress
// with cancellation. The plugin talks to the server through LSP4IJ's connection with the same
// [LaneServer] interface and [CommandCall]s; the tests (and any tool) use [LaneClient] directly.

package dev.lane.core

import com.google.gson.Gson
import com.google.gson.reflect.TypeToken
import org.eclipse.lsp4j.ClientCapabilities
import org.eclipse.lsp4j.ExecuteCommandParams
import org.eclipse.lsp4j.InitializeParams
import org.eclipse.lsp4j.InitializeResult
import org.eclipse.lsp4j.InitializedParams
import org.eclipse.lsp4j.MessageActionItem
import org.eclipse.lsp4j.MessageParams
import org.eclipse.lsp4j.ProgressParams
import org.eclipse.lsp4j.PublishDiagnosticsParams
import org.eclipse.lsp4j.ShowMessageRequestParams
import org.eclipse.lsp4j.WindowClientCapabilities
import org.eclipse.lsp4j.WorkDoneProgressBegin
import org.eclipse.lsp4j.WorkDoneProgressCancelParams
import org.eclipse.lsp4j.WorkDoneProgressCreateParams
import org.eclipse.lsp4j.WorkDoneProgressEnd
import org.eclipse.lsp4j.WorkDoneProgressReport
import org.eclipse.lsp4j.WorkspaceFolder
import org.eclipse.lsp4j.jsonrpc.Launcher
import org.eclipse.lsp4j.jsonrpc.messages.Either
import org.eclipse.lsp4j.jsonrpc.services.JsonNotification
import org.eclipse.lsp4j.jsonrpc.services.JsonRequest
import org.eclipse.lsp4j.services.LanguageClient
import org.eclipse.lsp4j.services.LanguageServer
import java.io.File
import java.io.InputStream
import java.io.OutputStream
import java.lang.reflect.Type
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong

/** The server as LSP4J sees it: LSP plus `lane/status`. */
interface LaneServer : LanguageServer {
    /** `lane/status`: no params. */
    @JsonRequest(Methods.STATUS)
    fun laneStatus(): CompletableFuture<LaneStatus>

    /** `lane/history`: every change to one lane, oldest first. */
    @JsonRequest(Methods.HISTORY)
    fun laneHistory(params: HistoryParams): CompletableFuture<List<HistoryEntryInfo>>
}

/** The server → client notifications of the lane protocol (the plugin's LSP4IJ client has it too). */
interface LaneNotifications {
    @JsonNotification(Methods.STATUS_CHANGED)
    fun statusChanged(status: LaneStatus)
}

/** One `$/progress` value, flattened. */
data class ProgressEvent(
    val token: String,
    /** `begin`, `report` or `end`. */
    val kind: String,
    val title: String? = null,
    val message: String? = null,
    val percentage: Int? = null,
    val cancellable: Boolean? = null,
) {
    companion object {
        /** The event of an LSP4J `$/progress`, or null for a value that is not work-done progress. */
        fun of(params: ProgressParams): ProgressEvent? {
            val token = tokenText(params.token)
            val value = params.value?.takeIf { it.isLeft }?.left ?: return null
            return when (value) {
                is WorkDoneProgressBegin -> ProgressEvent(token, "begin", value.title, value.message, value.percentage, value.cancellable)
                is WorkDoneProgressReport -> ProgressEvent(token, "report", null, value.message, value.percentage, value.cancellable)
                is WorkDoneProgressEnd -> ProgressEvent(token, "end", null, value.message)
                else -> null
            }
        }

        fun tokenText(token: Either<String, Int>?): String = when {
            token == null -> ""
            token.isLeft -> token.left
            else -> token.right.toString()
        }
    }
}

private val gson = Gson()

/** A command's result, converted from what LSP4J hands over (a Gson tree or plain maps). */
fun <R> convertResult(raw: Any?, type: Type): R {
    val tree = if (raw is com.google.gson.JsonElement) raw else gson.toJsonTree(raw)
    @Suppress("UNCHECKED_CAST")
    return gson.fromJson<Any>(tree, type) as R
}

/** The `workspace/executeCommand` params of [spec]: `arguments` is `[args]`, or `[]` without. */
fun <A : Any> commandParams(spec: CommandSpec<A, *>, args: A?, workDoneToken: String? = null): ExecuteCommandParams {
    val arguments: List<Any> = if (args == null || args is NoArgs) emptyList() else listOf(args)
    val params = ExecuteCommandParams(spec.name, arguments)
    if (workDoneToken != null) params.setWorkDoneToken(workDoneToken)
    return params
}

/** The result type of [spec] (`List<LaneInfo>` for `lane.list`). */
fun resultType(spec: CommandSpec<*, *>): Type =
    if (spec.resultIsList) TypeToken.getParameterized(List::class.java, spec.resultClass).type else spec.resultClass

/**
 * A running command: [result] completes with the converted result or the server's error. [cancel]
 * sends `$/cancelRequest` for it; [cancelProgress] sends `window/workDoneProgress/cancel` for its
 * work-done token (a deploy already live then completes).
 */
class CommandCall<R>(
    private val raw: CompletableFuture<Any?>,
    val result: CompletableFuture<R>,
    val workDoneToken: String?,
    private val server: LanguageServer,
) {
    fun cancel() {
        raw.cancel(true)
    }

    fun cancelProgress() {
        val token = workDoneToken ?: return
        server.cancelProgress(WorkDoneProgressCancelParams(Either.forLeft(token)))
    }
}

/** Sends [spec] with [args] on [server]; [workDoneToken] asks for progress under that token. */
fun <A : Any, R> runCommand(server: LanguageServer, spec: CommandSpec<A, *>, args: A?, workDoneToken: String? = null): CommandCall<R> {
    val raw = server.workspaceService.executeCommand(commandParams(spec, args, workDoneToken))
    val type = resultType(spec)
    val result = raw.thenApply { convertResult<R>(it, type) }
    return CommandCall(raw, result, workDoneToken, server)
}

private val tokens = AtomicLong(1)

/** A fresh work-done token for a client-started deploy. */
fun newDeployToken(): String = newProgressToken("deploy")

/** A fresh work-done token for a client-started command with progress (`deploy`, `data.export`, …). */
fun newProgressToken(kind: String): String = "lane-jetbrains/$kind/${tokens.getAndIncrement()}"

/** The token kind of [spec]'s progress: `deploy` for the deploy, `data.export` for `lane.data.export`. */
fun progressKind(spec: CommandSpec<*, *>): String =
    if (spec.name == Commands.deployCurrentBranch.name) "deploy" else spec.name.removePrefix("lane.")

/**
 * The client end: receives `lane/statusChanged`, `$/progress`, log and show-message notifications
 * and hands them to listeners. Progress tokens the server creates are accepted.
 */
open class LaneClientEndpoint : LanguageClient, LaneNotifications {
    private val statusListeners = CopyOnWriteArrayList<(LaneStatus) -> Unit>()
    private val progressListeners = CopyOnWriteArrayList<(ProgressEvent) -> Unit>()
    private val logListeners = CopyOnWriteArrayList<(MessageParams) -> Unit>()
    private val shownListeners = CopyOnWriteArrayList<(MessageParams) -> Unit>()

    @Volatile
    var latestStatus: LaneStatus? = null
        private set

    fun onStatus(l: (LaneStatus) -> Unit): AutoCloseable {
        statusListeners.add(l)
        return AutoCloseable { statusListeners.remove(l) }
    }

    fun onProgress(l: (ProgressEvent) -> Unit): AutoCloseable {
        progressListeners.add(l)
        return AutoCloseable { progressListeners.remove(l) }
    }

    /** `window/logMessage` and `window/showMessage`. */
    fun onLog(l: (MessageParams) -> Unit): AutoCloseable {
        logListeners.add(l)
        return AutoCloseable { logListeners.remove(l) }
    }

    /** `window/showMessage` only (a popup the server asks for). */
    fun onShowMessage(l: (MessageParams) -> Unit): AutoCloseable {
        shownListeners.add(l)
        return AutoCloseable { shownListeners.remove(l) }
    }

    /** Records a status (pushed, or answered to `lane/status`) and tells the listeners. */
    fun acceptStatus(status: LaneStatus) {
        latestStatus = status
        statusListeners.forEach { it(status) }
    }

    override fun statusChanged(status: LaneStatus) = acceptStatus(status)

    override fun notifyProgress(params: ProgressParams) {
        val event = ProgressEvent.of(params) ?: return
        progressListeners.forEach { it(event) }
    }

    override fun createProgress(params: WorkDoneProgressCreateParams): CompletableFuture<Void> =
        CompletableFuture.completedFuture(null)

    override fun telemetryEvent(obj: Any?) {}

    override fun publishDiagnostics(diagnostics: PublishDiagnosticsParams?) {}

    override fun showMessage(params: MessageParams) {
        shownListeners.forEach { it(params) }
        logListeners.forEach { it(params) }
    }

    override fun showMessageRequest(params: ShowMessageRequestParams?): CompletableFuture<MessageActionItem?> =
        CompletableFuture.completedFuture(null)

    override fun logMessage(params: MessageParams) = logListeners.forEach { it(params) }
}

/**
 * `initialize`'s `initializationOptions`: `showErrors: false`, as the plugin shows the error each
 * command is answered (with its button); the server's own `window/showMessage` would be a second
 * popup with the same text.
 */
fun laneInitializationOptions(): Map<String, Any> = mapOf("client" to "jetbrains", "showErrors" to false)

/** What `initialize` sends: the folders, the trace level, work-done progress support and
 * [laneInitializationOptions]. */
fun initializeParams(folders: List<File>, trace: TraceLevel, processId: Int? = null): InitializeParams {
    val p = InitializeParams()
    p.processId = processId
    p.clientInfo = org.eclipse.lsp4j.ClientInfo("lane-jetbrains", "0.1.0")
    p.workspaceFolders = folders.map { WorkspaceFolder(it.toURI().toString().removeSuffix("/"), it.name) }
    p.trace = trace.wire
    p.initializationOptions = laneInitializationOptions()
    val window = WindowClientCapabilities()
    window.workDoneProgress = true
    val caps = ClientCapabilities()
    caps.window = window
    p.capabilities = caps
    return p
}

/** The protocol version the server announced in `initialize`, when it did. */
fun serverProtocolVersion(init: InitializeResult): Int? {
    val experimental = init.capabilities?.experimental ?: return null
    val tree = if (experimental is com.google.gson.JsonElement) experimental else gson.toJsonTree(experimental)
    val v = tree.takeIf { it.isJsonObject }?.asJsonObject?.get("laneProtocolVersion") ?: return null
    return if (v.isJsonPrimitive && v.asJsonPrimitive.isNumber) v.asInt else null
}

/**
 * `lane lsp` started as a process (or any stream pair) with a typed API. Not used by the plugin,
 * whose connection LSP4IJ owns; the wire test drives the real binary through it.
 */
class LaneClient private constructor(
    input: InputStream,
    output: OutputStream,
    private val process: Process?,
    val endpoint: LaneClientEndpoint,
) : AutoCloseable {
    private val executor: ExecutorService = Executors.newCachedThreadPool { r ->
        Thread(r, "lane-lsp-client").apply { isDaemon = true }
    }
    private val launcher: Launcher<LaneServer> = Launcher.Builder<LaneServer>()
        .setLocalService(endpoint)
        .setRemoteInterface(LaneServer::class.java)
        .setInput(input)
        .setOutput(output)
        .setExecutorService(executor)
        .create()
    val server: LaneServer = launcher.remoteProxy
    private val listening = launcher.startListening()

    /** What the server wrote to stderr (its log), for error reports. */
    val stderr = StringBuffer()

    fun initialize(folders: List<File>, trace: TraceLevel = TraceLevel.OFF): CompletableFuture<InitializeResult> =
        server.initialize(initializeParams(folders, trace, ProcessHandle.current().pid().toInt()))

    fun initialized() = server.initialized(InitializedParams())

    /** `lane/status`; the answer also becomes [LaneClientEndpoint.latestStatus]. */
    fun status(): CompletableFuture<LaneStatus> = server.laneStatus().thenApply { it.also(endpoint::acceptStatus) }

    /** `lane/history` of [lane]: what happened to it, by whom and why (also after it was deleted). */
    fun history(lane: String): CompletableFuture<List<HistoryEntryInfo>> = server.laneHistory(HistoryParams(lane))

    fun <A : Any, R> exec(spec: CommandSpec<A, *>, args: A?, workDoneToken: String? = null): CommandCall<R> =
        runCommand(server, spec, args, workDoneToken)

    fun statusCommand(): CompletableFuture<LaneStatus> = exec<NoArgs, LaneStatus>(Commands.status, null).result

    /** [spec] with progress under a token of its own; [onProgress] sees its events. */
    fun <A : Any, R> execWithProgress(spec: CommandSpec<A, *>, args: A, onProgress: (ProgressEvent) -> Unit): CommandCall<R> {
        val token = newProgressToken(progressKind(spec))
        val sub = endpoint.onProgress { if (it.token == token) onProgress(it) }
        val call = exec<A, R>(spec, args, token)
        call.result.whenComplete { _, _ ->
            // The `end` report may follow the answer by a moment.
            CompletableFuture.delayedExecutor(2, TimeUnit.SECONDS).execute { sub.close() }
        }
        return call
    }

    /** `lane.deployCurrentBranch` with progress under its own token; [onProgress] sees its events. */
    fun deploy(args: DeployArgs, onProgress: (ProgressEvent) -> Unit = {}): CommandCall<DeployResult> =
        execWithProgress(Commands.deployCurrentBranch, args, onProgress)

    fun switchTraffic(lane: String): CompletableFuture<SwitchResult> =
        exec<SwitchArgs, SwitchResult>(Commands.switchTraffic, SwitchArgs(lane)).result

    fun list(): CompletableFuture<List<LaneInfo>> = exec<NoArgs, List<LaneInfo>>(Commands.list, null).result

    fun create(args: CreateArgs): CompletableFuture<LaneInfo> = exec<CreateArgs, LaneInfo>(Commands.create, args).result

    fun delete(args: DeleteArgs): CompletableFuture<DeleteResult> = exec<DeleteArgs, DeleteResult>(Commands.delete, args).result

    fun extend(args: ExtendArgs): CompletableFuture<LaneInfo> = exec<ExtendArgs, LaneInfo>(Commands.extend, args).result

    fun assign(args: AssignArgs): CompletableFuture<AssignResult> = exec<AssignArgs, AssignResult>(Commands.assign, args).result

    fun dataLs(args: DataLsArgs): CompletableFuture<List<DataInfo>> =
        exec<DataLsArgs, List<DataInfo>>(Commands.dataLs, args).result

    /** `lane.data.export` with progress; cancelled by [CommandCall.cancelProgress] (or [CommandCall.cancel]). */
    fun dataExport(args: DataExportArgs, onProgress: (ProgressEvent) -> Unit = {}): CommandCall<DataTransferResult> =
        execWithProgress(Commands.dataExport, args, onProgress)

    /** `lane.data.import` with progress: replaces the lane's data (a cancel or failure leaves it as it was). */
    fun dataImport(args: DataImportArgs, onProgress: (ProgressEvent) -> Unit = {}): CommandCall<DataTransferResult> =
        execWithProgress(Commands.dataImport, args, onProgress)

    /** `lane.data.backup` with progress: a new file under `$LANE_HOME/backups/<lane>/`. */
    fun dataBackup(args: DataBackupArgs, onProgress: (ProgressEvent) -> Unit = {}): CommandCall<DataTransferResult> =
        execWithProgress(Commands.dataBackup, args, onProgress)

    /** `lane.data.backups`: a lane's backups (every lane's with a null lane), oldest first. */
    fun dataBackups(args: DataBackupsArgs): CompletableFuture<List<DataBackupInfo>> =
        exec<DataBackupsArgs, List<DataBackupInfo>>(Commands.dataBackups, args).result

    /** `lane.data.restore` with progress: imports a backup as [dataImport] does. */
    fun dataRestore(args: DataRestoreArgs, onProgress: (ProgressEvent) -> Unit = {}): CommandCall<DataTransferResult> =
        execWithProgress(Commands.dataRestore, args, onProgress)

    /** `shutdown` then `exit`, then waits for the process (killing it after [timeoutSecs]). */
    override fun close() = close(5)

    @Volatile
    private var closed = false

    fun close(timeoutSecs: Long) {
        if (closed) return
        closed = true
        try {
            server.shutdown().get(timeoutSecs, TimeUnit.SECONDS)
            server.exit()
        } catch (_: Exception) {
            // the server may be gone already
        }
        process?.let { p ->
            if (!p.waitFor(timeoutSecs, TimeUnit.SECONDS)) p.destroyForcibly().waitFor(timeoutSecs, TimeUnit.SECONDS)
        }
        listening.cancel(true)
        executor.shutdownNow()
    }

    /** The process's exit code, once it has exited. */
    fun exitCode(): Int? = process?.takeIf { !it.isAlive }?.exitValue()

    companion object {
        /** Connects to a server on [input]/[output] (a socket, or a process started elsewhere). */
        fun connect(input: InputStream, output: OutputStream, endpoint: LaneClientEndpoint = LaneClientEndpoint()): LaneClient =
            LaneClient(input, output, null, endpoint)

        /**
         * Starts `<bin> lsp` in [cwd] with [env] added to this process's environment (or, when
         * [inheritEnv] is false, with only [env]).
         */
        fun start(
            bin: String,
            cwd: File,
            env: Map<String, String> = emptyMap(),
            endpoint: LaneClientEndpoint = LaneClientEndpoint(),
            inheritEnv: Boolean = true,
        ): LaneClient {
            val pb = ProcessBuilder(bin, "lsp").directory(cwd)
            if (!inheritEnv) pb.environment().clear()
            pb.environment().putAll(env)
            val process = pb.start()
            val client = LaneClient(process.inputStream, process.outputStream, process, endpoint)
            Thread({
                process.errorStream.bufferedReader().forEachLine { line ->
                    client.stderr.append(line).append('\n')
                    if (client.stderr.length > 200_000) client.stderr.delete(0, 100_000)
                }
            }, "lane-lsp-stderr").apply { isDaemon = true }.start()
            return client
        }
    }
}
