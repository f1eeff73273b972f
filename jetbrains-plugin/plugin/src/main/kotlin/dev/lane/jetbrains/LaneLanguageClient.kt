// The LSP4IJ client of `lane lsp`: receives the pushed `lane/statusChanged` and the log lines and
// hands them to the project service; progress of the deploys this plugin started goes to their background task,
// other progress to LSP4IJ as usual.

package dev.lane.jetbrains

import com.intellij.openapi.project.Project
import com.redhat.devtools.lsp4ij.ServerStatus
import com.redhat.devtools.lsp4ij.client.LanguageClientImpl
import dev.lane.core.AgentRestartInfo
import dev.lane.core.LaneStatus
import dev.lane.core.Methods
import dev.lane.core.ProgressEvent
import org.eclipse.lsp4j.MessageParams
import org.eclipse.lsp4j.ProgressParams
import org.eclipse.lsp4j.jsonrpc.services.JsonNotification

class LaneLanguageClient(project: Project) : LanguageClientImpl(project) {
    private val service get() = LaneProjectService.getInstance(project)

    @JsonNotification(Methods.STATUS_CHANGED)
    fun statusChanged(status: LaneStatus) {
        service.acceptStatus(status)
    }

    /** `lane lsp` started the local agent again after it died: kept in the server log. */
    @JsonNotification(Methods.AGENT_RESTARTED)
    fun agentRestarted(info: AgentRestartInfo) {
        service.appendLog(if (info.error == null) info.message else "${info.message}: ${info.error}")
    }

    override fun notifyProgress(params: ProgressParams) {
        val event = ProgressEvent.of(params)
        if (event != null && service.ownsProgress(event.token)) {
            service.acceptProgress(event)
        } else {
            super.notifyProgress(params)
        }
    }

    /** Deploy stages, build and service output: kept for Show Server Logs, and LSP4IJ's console. */
    override fun logMessage(message: MessageParams) {
        service.appendLog(message.message)
        super.logMessage(message)
    }

    override fun handleServerStatusChanged(serverStatus: ServerStatus) {
        when (serverStatus) {
            ServerStatus.started -> service.serverStarted()
            ServerStatus.stopping, ServerStatus.stopped -> service.serverStopped()
            else -> {}
        }
    }
}
