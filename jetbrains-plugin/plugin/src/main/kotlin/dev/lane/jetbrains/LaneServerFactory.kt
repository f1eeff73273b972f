// LSP4IJ's side: the factory that starts `lane lsp` for the project, the LSP4J server interface with
// the custom request, and client features that keep the server alive while the project is open.

package dev.lane.jetbrains

import com.intellij.execution.configurations.GeneralCommandLine
import com.intellij.openapi.project.Project
import com.redhat.devtools.lsp4ij.LanguageServerFactory
import com.redhat.devtools.lsp4ij.client.LanguageClientImpl
import com.redhat.devtools.lsp4ij.client.features.LSPClientFeatures
import com.redhat.devtools.lsp4ij.server.OSProcessStreamConnectionProvider
import com.redhat.devtools.lsp4ij.server.StreamConnectionProvider
import dev.lane.core.LaneServer
import dev.lane.core.laneInitializationOptions
import dev.lane.core.LocateResult
import dev.lane.core.Lookup
import dev.lane.core.locateServer
import org.eclipse.lsp4j.ClientCapabilities
import org.eclipse.lsp4j.InitializeParams
import org.eclipse.lsp4j.WindowClientCapabilities
import org.eclipse.lsp4j.services.LanguageServer

/** The id of the server in plugin.xml (`com.redhat.devtools.lsp4ij.server`). */
const val LANE_SERVER_ID = "lane"

class LaneServerFactory : LanguageServerFactory {
    override fun createConnectionProvider(project: Project): StreamConnectionProvider = LaneConnectionProvider(project)

    override fun createLanguageClient(project: Project): LanguageClientImpl = LaneLanguageClient(project)

    override fun getServerInterface(): Class<out LanguageServer> = LaneServer::class.java

    override fun createClientFeatures(): LSPClientFeatures = LaneClientFeatures()
}

/** `lane lsp` in the project's directory; the binary found as the core's [locateServer] says. */
class LaneConnectionProvider(project: Project) : OSProcessStreamConnectionProvider() {
    init {
        val settings = LaneSettingsService.getInstance().settings
        val found = locateServer(
            Lookup(
                env = System.getenv("LANE_SERVER_PATH"),
                setting = settings.serverPath,
                pathVar = System.getenv("PATH"),
                cargoHome = System.getenv("CARGO_HOME"),
                home = System.getProperty("user.home"),
            ),
        )
        val service = LaneProjectService.getInstance(project)
        val exe = when (found) {
            is LocateResult.Found -> {
                service.serverLocated(found.located.path, null)
                found.located.path
            }
            is LocateResult.NotFound -> {
                service.serverLocated(null, found.tried)
                // LSP4IJ reports the failed start in its console; the widget says "lane: not found".
                "lane"
            }
        }
        val commandLine = GeneralCommandLine(exe, "lsp")
            .withParentEnvironmentType(GeneralCommandLine.ParentEnvironmentType.CONSOLE)
        project.basePath?.let { commandLine.withWorkDirectory(it) }
        setCommandLine(commandLine)
    }
}

class LaneClientFeatures : LSPClientFeatures() {
    /** The status bar and the Lanes tree need the server whether or not a file is open. */
    override fun keepServerAlive(): Boolean = true

    /**
     * The trace level from the settings, work-done progress for deploys, and `showErrors: false`:
     * the actions show the error each command is answered (with its button), so the server's own
     * `window/showMessage` would be a second popup with the same text.
     */
    override fun initializeParams(params: InitializeParams) {
        params.trace = LaneSettingsService.getInstance().settings.trace.wire
        params.initializationOptions = laneInitializationOptions()
        val caps = params.capabilities ?: ClientCapabilities().also { params.capabilities = it }
        val window = caps.window ?: WindowClientCapabilities().also { caps.window = it }
        window.workDoneProgress = true
    }
}
