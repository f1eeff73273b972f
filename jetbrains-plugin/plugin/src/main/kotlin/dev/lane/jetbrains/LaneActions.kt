// Tools → Lane: one action per operation (ids and titles from the core's LaneActions, registered in
// plugin.xml, so Search Everywhere finds them). They only ask, call the server's commands and report.

package dev.lane.jetbrains

import com.intellij.notification.NotificationType
import com.intellij.openapi.actionSystem.ActionUpdateThread
import com.intellij.openapi.actionSystem.AnAction
import com.intellij.openapi.actionSystem.AnActionEvent
import com.intellij.openapi.ide.CopyPasteManager
import com.intellij.openapi.progress.ProcessCanceledException
import com.intellij.openapi.progress.ProgressIndicator
import com.intellij.openapi.progress.Task
import com.intellij.openapi.project.DumbAware
import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.Messages
import com.intellij.openapi.wm.ToolWindowManager
import dev.lane.core.AssignResult
import dev.lane.core.BASELINE
import dev.lane.core.Commands
import dev.lane.core.DeleteResult
import dev.lane.core.DeployArgs
import dev.lane.core.DeployResult
import dev.lane.core.LaneInfo
import dev.lane.core.LaneStatus
import dev.lane.core.MovableVersion
import dev.lane.core.NodeIcon
import dev.lane.core.NodeKind
import dev.lane.core.RequestTarget
import dev.lane.core.ServerState
import dev.lane.core.serverNotFoundText
import dev.lane.core.SwitchArgs
import dev.lane.core.SwitchResult
import dev.lane.core.Texts
import dev.lane.core.TreeNode
import dev.lane.core.assignArgs
import dev.lane.core.buildRequests
import dev.lane.core.clipboardText
import dev.lane.core.createArgs
import dev.lane.core.deleteArgs
import dev.lane.core.deleteMayForce
import dev.lane.core.deployArgs
import dev.lane.core.deployMayForce
import dev.lane.core.deployableWorkspaces
import dev.lane.core.extendArgs
import dev.lane.core.movableVersions
import dev.lane.core.copiedText
import dev.lane.core.deleteConfirmText
import dev.lane.core.deletedText
import dev.lane.core.deployedRequests
import dev.lane.core.extendedText
import dev.lane.core.httpProxyExport
import dev.lane.core.proxyStartedText
import dev.lane.core.serviceLog
import dev.lane.core.statusBarText
import dev.lane.core.statusPlainText
import dev.lane.core.suggestedLane
import dev.lane.core.switchText
import dev.lane.core.toUserError
import dev.lane.core.workspaceOf
import dev.lane.core.CopiedRequest
import dev.lane.core.WorkspaceInfo
import java.awt.datatransfer.StringSelection
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException

/** Base: needs a project; state is read on a background thread. */
abstract class LaneAction : AnAction(), DumbAware {
    override fun getActionUpdateThread(): ActionUpdateThread = ActionUpdateThread.BGT

    override fun update(e: AnActionEvent) {
        e.presentation.isEnabledAndVisible = e.project != null
    }

    final override fun actionPerformed(e: AnActionEvent) {
        runFor(e.project ?: return)
    }

    /** Whether it needs `lane lsp` (false for the actions that help to find or restart it). */
    open val needsServer: Boolean = true

    /**
     * Runs it; while no `lane` binary was found, says so with the fix instead (a command must not
     * fail for some other reason, e.g. "no workspace folder has a valid lane.toml").
     */
    fun runFor(project: Project) {
        val service = laneService(project)
        if (needsServer && service.serverState == ServerState.MISSING) return notifyServerNotFound(project, service.missingTried)
        perform(project)
    }

    abstract fun perform(project: Project)
}

/** The "server not found" notification with its fix. */
fun notifyServerNotFound(project: Project, tried: List<String>) =
    notify(project, serverNotFoundText(tried), NotificationType.ERROR, Texts.OPEN_SETTINGS to { OpenServerSettingsAction().perform(project) })

private fun laneService(project: Project) = LaneProjectService.getInstance(project)

class ShowStatusAction : LaneAction() {
    override fun perform(project: Project) {
        laneService(project).exec<LaneStatus>(Commands.status).thenOnEdt(project, "Show Status") { status ->
            laneService(project).acceptStatus(status)
            laneService(project).appendLog("\n" + statusPlainText(status, project.basePath) + "\n")
            notify(
                project, statusBarText(status), NotificationType.INFORMATION,
                Texts.OPEN_LANES_VIEW to { ToolWindowManager.getInstance(project).getToolWindow(TOOL_WINDOW_ID)?.activate(null) },
                Texts.SWITCH_TRAFFIC to { SwitchAction.ask(project) },
            )
        }
    }
}

class DeployAction : LaneAction() {
    override fun perform(project: Project) = deployInto(project, null)

    companion object {
        /**
         * Deploys the current branch of a project service into a lane. From the tree, [node]'s lane
         * (unless baseline) and, for a service node, its service; otherwise the user picks (the only
         * service is taken as is; a lane named after the branch is proposed first).
         */
        fun deployInto(project: Project, node: TreeNode?) {
            val status = laneService(project).status
            val nodeService = node?.service
            if (nodeService != null) {
                val ws = workspaceOf(status, nodeService)
                    ?: return notify(project, Texts.notAWorkspaceService(nodeService), NotificationType.WARNING)
                return deployWorkspace(project, ws, node?.lane)
            }
            chooseWorkspace(project, deployableWorkspaces(status)) { ws ->
                if (ws == null) return@chooseWorkspace notify(project, Texts.NOTHING_TO_DEPLOY, NotificationType.WARNING)
                deployWorkspace(project, ws, node?.lane)
            }
        }

        private fun deployWorkspace(project: Project, ws: WorkspaceInfo, lane: String?) {
            if (lane != null && lane != BASELINE) return runDeploy(project, deployArgs(ws, lane))
            pickLane(
                project,
                Texts.deployTitle(ws),
                includeNew = true,
                suggestNew = suggestedLane(ws),
                newTitle = Texts.deployNewTitle(ws),
            ) { picked -> runDeploy(project, deployArgs(ws, picked)) }
        }

        /**
         * The deploy as a cancellable background task: the server's progress (stage messages and
         * percentage) drives the indicator; Cancel sends `$/cancelRequest` (a deploy that has not
         * gone live is rolled back by the server).
         */
        fun runDeploy(project: Project, args: DeployArgs) {
            object : Task.Backgroundable(project, "Lane: deploying into ${args.lane}", true) {
                private var result: DeployResult? = null

                override fun run(indicator: ProgressIndicator) {
                    indicator.isIndeterminate = false
                    indicator.fraction = 0.0
                    val pending = laneService(project).execWithProgress<DeployArgs, DeployResult>(Commands.deployCurrentBranch, args) { ev ->
                        ev.title?.let { indicator.text = Texts.progressTitle(it) }
                        ev.message?.let { indicator.text2 = it }
                        ev.percentage?.let { indicator.fraction = it / 100.0 }
                    }
                    val call = pending.get(60, TimeUnit.SECONDS)
                    while (true) {
                        try {
                            result = call.result.get(200, TimeUnit.MILLISECONDS)
                            return
                        } catch (_: TimeoutException) {
                            // still running
                        }
                        if (indicator.isCanceled) {
                            call.cancel()
                            throw ProcessCanceledException()
                        }
                    }
                }

                override fun onSuccess() {
                    val r = result ?: return
                    val active = laneService(project).status?.activeLane ?: BASELINE
                    val actions = Texts.afterDeploy(r, active).map { title ->
                        title to {
                            if (title == Texts.SWITCH_TRAFFIC_TO_IT) SwitchAction.switchTo(project, r.lane) else CopyRequestAction.copyDeployed(project, r)
                        }
                    }
                    notify(project, Texts.deployed(r), NotificationType.INFORMATION, *actions.toTypedArray())
                }

                override fun onCancel() = notify(project, Texts.cancelled("Deploy"))

                override fun onThrowable(error: Throwable) {
                    val u = toUserError(error)
                    if (!args.force && deployMayForce(u)) {
                        val ok = Messages.showOkCancelDialog(project, Texts.deployAnyway(u.message), "Lane", Texts.FORCE, Messages.getCancelButton(), Messages.getWarningIcon())
                        if (ok == Messages.OK) runDeploy(project, args.copy(force = true))
                        return
                    }
                    reportFailure(project, "Deploy", error)
                }
            }.queue()
        }
    }
}

class SwitchAction : LaneAction() {
    override fun perform(project: Project) = ask(project)

    companion object {
        fun ask(project: Project) = pickLane(project, Texts.SWITCH_TITLE, includeBaseline = true) { switchTo(project, it) }

        fun switchTo(project: Project, lane: String) {
            laneService(project).exec<SwitchArgs, SwitchResult>(Commands.switchTraffic, SwitchArgs(lane)).thenOnEdt(project, "Switch Traffic") {
                val service = laneService(project)
                val running = service.proxyRunning
                val actions = Texts.afterSwitch(it.activeLane, running).map { title ->
                    title to { if (title == Texts.START_PROXY) StartProxyAction().perform(project) else CopyRequestAction().perform(project) }
                }
                notify(project, switchText(it.activeLane, running, service.proxyListen), NotificationType.INFORMATION, *actions.toTypedArray())
            }
        }
    }
}

class CreateLaneAction : LaneAction() {
    override fun perform(project: Project) {
        val lane = askLaneId(project, "Create Lane") ?: return
        laneService(project).exec<List<LaneInfo>>(Commands.list).thenOnEdt(project, "Create Lane") { existing ->
            fun finish(parent: String?) {
                val ttl = askDuration(project, "Create Lane", Texts.LIFETIME_PROMPT) ?: return
                laneService(project).exec<dev.lane.core.CreateArgs, LaneInfo>(Commands.create, createArgs(lane, parent, ttl))
                    .thenOnEdt(project, "Create Lane") { notify(project, Texts.created(it.id, ttl)) }
            }
            if (existing.isEmpty()) return@thenOnEdt finish(null)
            val none: LaneInfo? = null
            choose(project, Texts.stackOn(lane), listOf(none) + existing, {
                if (it == null) "${Texts.NO_PARENT}  ·  ${Texts.NO_PARENT_DETAIL}" else "${it.id}  ·  ${Texts.owner(it.owner)}"
            }, { iconOf(if (it == null) NodeIcon.BASELINE else NodeIcon.LANE) }) { finish(it?.id) }
        }
    }
}

/** The lane of a tree node, when the action runs from the Lanes tree. */
abstract class NodeAction(protected val node: TreeNode? = null) : LaneAction()

class DeleteLaneAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        val lane = node?.lane
        if (lane != null) confirm(project, lane) else pickLane(project, Texts.DELETE_WHICH) { confirm(project, it) }
    }

    private fun confirm(project: Project, lane: String) {
        if (lane == BASELINE) return
        val status = laneService(project).status
        val ok = Messages.showOkCancelDialog(project, deleteConfirmText(status, lane), "Lane", Texts.DELETE, Messages.getCancelButton(), Messages.getWarningIcon())
        if (ok == Messages.OK) delete(project, lane, force = false, wasActive = status?.activeLane == lane)
    }

    private fun delete(project: Project, lane: String, force: Boolean, wasActive: Boolean) {
        laneService(project).exec<dev.lane.core.DeleteArgs, DeleteResult>(Commands.delete, deleteArgs(lane, force)).whenComplete { r, error ->
            onEdt(project) {
                if (error == null) return@onEdt notify(project, deletedText(r, wasActive))
                val u = toUserError(error)
                if (!force && deleteMayForce(u)) {
                    val ok = Messages.showOkCancelDialog(project, Texts.deleteAnyway(u.message), "Lane", Texts.FORCE_DELETE, Messages.getCancelButton(), Messages.getWarningIcon())
                    if (ok == Messages.OK) delete(project, lane, force = true, wasActive = wasActive)
                } else {
                    reportFailure(project, "Delete Lane", error)
                }
            }
        }
    }
}

class ExtendLaneAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        val lane = node?.lane
        if (lane != null) extend(project, lane) else pickLane(project, Texts.EXTEND_WHICH) { extend(project, it) }
    }

    private fun extend(project: Project, lane: String) {
        if (lane == BASELINE) return
        val by = askDuration(project, Texts.extendTitle(lane), Texts.HOW_MUCH_LONGER) ?: return
        laneService(project).exec<dev.lane.core.ExtendArgs, LaneInfo>(Commands.extend, extendArgs(lane, by))
            .thenOnEdt(project, "Extend Lane") { notify(project, extendedText(it, by)) }
    }
}

class AssignVersionAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        val n = node
        if (n != null && n.kind == NodeKind.SERVICE && n.service != null && n.lane != null) {
            return moveTo(project, n.service!!, n.lane!!)
        }
        laneService(project).exec<List<LaneInfo>>(Commands.list).thenOnEdt(project, "Move Version") { lanes ->
            val versions = movableVersions(lanes)
            if (versions.isEmpty()) return@thenOnEdt notify(project, Texts.NOTHING_TO_MOVE)
            choose(project, Texts.MOVE_WHICH, versions, { v: MovableVersion -> "${v.label}  ·  ${v.description}" }, { iconOf(NodeIcon.LANE) }) {
                moveTo(project, it.service, it.lane)
            }
        }
    }

    private fun moveTo(project: Project, service: String, from: String) {
        pickLane(project, Texts.moveTo(service, from), includeNew = true, exclude = from) { to ->
            laneService(project).exec<dev.lane.core.AssignArgs, AssignResult>(Commands.assign, assignArgs(service, from, to))
                .thenOnEdt(project, "Move Version") { notify(project, Texts.moved(it)) }
        }
    }
}

/**
 * Copies a request that reaches a service through the router: the node's service and lane (from
 * the tree), else the project's service in the active lane. After a deploy, [copyDeployed].
 */
class CopyRequestAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        val known = laneService(project).status
        val status = if (known != null) java.util.concurrent.CompletableFuture.completedFuture(known) else laneService(project).refresh()
        status.thenOnEdt(project, "Copy Request") { s ->
            val n = node
            val nodeService = n?.service
            fun copyFor(ws: WorkspaceInfo?) {
                if (ws == null || ws.service.isNullOrEmpty()) return notify(project, Texts.NO_SERVICE, NotificationType.WARNING)
                val router = s.router ?: return notify(project, Texts.NO_ROUTER, NotificationType.WARNING)
                val header = LaneSettingsService.getInstance().settings.headerFor(s)
                val target = RequestTarget(router, header, n?.lane ?: s.activeLane)
                copy(project, CopiedRequest(buildRequests(ws, target), target, ws.service!!))
            }
            if (nodeService != null) {
                // A service of another repository: its router host is derived from its id.
                copyFor(workspaceOf(s, nodeService) ?: WorkspaceInfo("", nodeService, null, null, null, null, null, null))
            } else {
                chooseWorkspace(project, deployableWorkspaces(s)) { copyFor(it) }
            }
        }
    }

    companion object {
        /** The request for the lane a deploy just made (header included), whatever lane traffic is on. */
        fun copyDeployed(project: Project, r: DeployResult) {
            try {
                val protocol = laneService(project).status?.let { workspaceOf(it, r.service) }?.protocol
                copy(project, deployedRequests(r, protocol, LaneSettingsService.getInstance().settings.laneHeader))
            } catch (e: IllegalArgumentException) {
                reportFailure(project, "Copy Request", e)
            }
        }

        private fun copy(project: Project, c: CopiedRequest) {
            CopyPasteManager.getInstance().setContents(StringSelection(clipboardText(c.requests)))
            notify(project, copiedText(c))
        }
    }
}

class StartProxyAction : LaneAction() {
    override fun perform(project: Project) {
        val service = laneService(project)
        service.startProxy().thenOnEdt(project, "Start Proxy") {
            val listen = service.proxyListen
            notify(
                project, proxyStartedText(listen, service.status?.activeLane ?: BASELINE), NotificationType.INFORMATION,
                Texts.COPY_HTTP_PROXY to { CopyPasteManager.getInstance().setContents(StringSelection(httpProxyExport(listen))) },
            )
        }
    }
}

class StopProxyAction : LaneAction() {
    override fun perform(project: Project) = laneService(project).stopProxy()
}

/** What `lane lsp` logged: deploy stages, build and service output. */
class ShowServerLogsAction : LaneAction() {
    override val needsServer: Boolean = false

    override fun perform(project: Project) = showServerLog(project)
}

/** Settings → Tools → Lane (the server path). */
class OpenServerSettingsAction : LaneAction() {
    override val needsServer: Boolean = false

    override fun perform(project: Project) =
        com.intellij.openapi.options.ShowSettingsUtil.getInstance().showSettingsDialog(project, LaneConfigurable::class.java)
}

/** A service's "Show Logs": its output file (a local process's), else the server log with its deploys. */
class ShowServiceLogsAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        val log = serviceLog(laneService(project).status, node?.lane, node?.service)
        if (log != null && openLocalFile(project, log)) return
        showServerLog(project)
        notify(project, Texts.noLogFile(node?.service))
    }
}

class RefreshAction : LaneAction() {
    override fun perform(project: Project) {
        laneService(project).refresh().thenOnEdt(project, "Refresh") {}
    }
}

class RestartServerAction : LaneAction() {
    override val needsServer: Boolean = false

    override fun perform(project: Project) = laneService(project).restart()
}

/** The tree's context action: send your requests into the node's lane. */
class SwitchToLaneAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) {
        node?.lane?.let { SwitchAction.switchTo(project, it) }
    }
}

/** Deploy Current Branch Here: into the node's lane (for a service node, that service). */
class DeployToLaneAction(node: TreeNode? = null) : NodeAction(node) {
    override fun perform(project: Project) = DeployAction.deployInto(project, node)
}

/** The action of [id] ([dev.lane.core.LaneActions]) bound to [node] (for the tree's context menu,
 * a node's double-click and the welcome's links); null for an id the tree does not run. */
fun laneActionFor(id: String, node: TreeNode?): LaneAction? = when (id) {
    dev.lane.core.LaneActions.SWITCH_TO -> SwitchToLaneAction(node)
    dev.lane.core.LaneActions.TREE_COPY_REQUEST -> CopyRequestAction(node)
    dev.lane.core.LaneActions.DEPLOY_HERE -> DeployToLaneAction(node)
    dev.lane.core.LaneActions.SHOW_SERVICE_LOGS -> ShowServiceLogsAction(node)
    dev.lane.core.LaneActions.EXTEND -> ExtendLaneAction(node)
    dev.lane.core.LaneActions.DELETE -> DeleteLaneAction(node)
    dev.lane.core.LaneActions.ASSIGN -> AssignVersionAction(node)
    dev.lane.core.LaneActions.DEPLOY -> DeployAction()
    dev.lane.core.LaneActions.CREATE -> CreateLaneAction()
    dev.lane.core.LaneActions.RESTART_SERVER -> RestartServerAction()
    dev.lane.core.LaneActions.OPEN_SETTINGS -> OpenServerSettingsAction()
    dev.lane.core.LaneActions.SHOW_LOGS -> ShowServerLogsAction()
    dev.lane.core.LaneActions.EXPORT_DATA -> ExportDataAction(node)
    dev.lane.core.LaneActions.IMPORT_DATA -> ImportDataAction(node)
    dev.lane.core.LaneActions.BACKUP_DATA -> BackupDataAction(node)
    dev.lane.core.LaneActions.RESTORE_DATA -> RestoreDataAction(node)
    else -> null
}
