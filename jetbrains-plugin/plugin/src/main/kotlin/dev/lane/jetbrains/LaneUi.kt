// The few dialogs, choosers and notifications the actions use. They show core texts only.

package dev.lane.jetbrains

import com.intellij.icons.AllIcons
import com.intellij.notification.NotificationAction
import com.intellij.notification.NotificationGroupManager
import com.intellij.notification.NotificationType
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.project.Project
import com.intellij.openapi.ui.InputValidatorEx
import com.intellij.openapi.ui.Messages
import com.intellij.openapi.ui.popup.JBPopupFactory
import com.intellij.openapi.ui.popup.PopupStep
import com.intellij.openapi.ui.popup.util.BaseListPopupStep
import dev.lane.core.Commands
import dev.lane.core.LaneInfo
import dev.lane.core.LanePick
import dev.lane.core.NodeIcon
import dev.lane.core.PickOptions
import dev.lane.core.SuggestedLane
import dev.lane.core.Texts
import dev.lane.core.WorkspaceInfo
import dev.lane.core.durationProblem
import dev.lane.core.errorAction
import dev.lane.core.errorText
import dev.lane.core.lanePicks
import dev.lane.core.laneIdProblem
import dev.lane.core.toUserError
import java.util.concurrent.CompletableFuture
import javax.swing.Icon

const val NOTIFICATION_GROUP = "Lane"

fun notify(project: Project, text: String, type: NotificationType = NotificationType.INFORMATION, vararg actions: Pair<String, () -> Unit>) {
    val n = NotificationGroupManager.getInstance().getNotificationGroup(NOTIFICATION_GROUP).createNotification(text, type)
    for ((title, run) in actions) {
        n.addAction(NotificationAction.createSimpleExpiring(title) { run() })
    }
    n.notify(project)
}

/**
 * A failure as one notification: a cancellation quietly, anything else as an error with help and,
 * when its cause is in the output (a failed build, a service that did not start), a button to it.
 */
fun reportFailure(project: Project, what: String, e: Throwable) {
    val u = toUserError(e)
    if (u.cancelled) return notify(project, Texts.cancelled(what))
    val action = errorAction(u)
    if (action == null) {
        notify(project, errorText(what, u), NotificationType.ERROR)
    } else {
        notify(project, errorText(what, u), NotificationType.ERROR, action to { showServerLog(project) })
    }
}

/** What `lane lsp` logged (deploy stages, build and service output) in a read-only editor tab. */
fun showServerLog(project: Project) {
    val file = com.intellij.testFramework.LightVirtualFile("lane lsp.log", LaneProjectService.getInstance(project).logText())
    file.isWritable = false
    com.intellij.openapi.fileEditor.FileEditorManager.getInstance(project).openFile(file, true)
}

/** A file on this machine (a service's log) in an editor tab. False when it does not exist. */
fun openLocalFile(project: Project, path: String): Boolean {
    val file = com.intellij.openapi.vfs.LocalFileSystem.getInstance().refreshAndFindFileByPath(path) ?: return false
    com.intellij.openapi.fileEditor.FileEditorManager.getInstance(project).openFile(file, true)
    return true
}

/** Runs [body] on the UI thread. */
fun onEdt(project: Project, body: () -> Unit) {
    ApplicationManager.getApplication().invokeLater({ body() }, project.disposed)
}

/** Completes [future] on the UI thread: [then] with the value, or a failure notification for [what]. */
fun <T> CompletableFuture<T>.thenOnEdt(project: Project, what: String, then: (T) -> Unit) {
    whenComplete { value, error ->
        onEdt(project) {
            if (error != null) reportFailure(project, what, error) else then(value)
        }
    }
}

fun iconOf(i: NodeIcon): Icon = when (i) {
    NodeIcon.ACTIVE -> AllIcons.Actions.Execute
    NodeIcon.LANE -> AllIcons.Vcs.Merge
    NodeIcon.BASELINE -> AllIcons.Vcs.Branch
    NodeIcon.HEALTHY -> AllIcons.General.InspectionsOK
    NodeIcon.WARNING -> AllIcons.General.Warning
    NodeIcon.STARTING -> AllIcons.Actions.Restart
    NodeIcon.FAILED -> AllIcons.General.Error
    NodeIcon.STOPPED -> AllIcons.Actions.Suspend
    NodeIcon.UNKNOWN -> AllIcons.Actions.Help
    NodeIcon.INFO -> AllIcons.General.Information
    NodeIcon.NEW -> AllIcons.General.Add
    NodeIcon.SEARCH -> AllIcons.Actions.Find
    NodeIcon.SETTINGS -> AllIcons.General.Settings
    NodeIcon.HELP -> AllIcons.Actions.Help
    NodeIcon.REFRESH -> AllIcons.Actions.Refresh
    NodeIcon.DATABASE -> AllIcons.Nodes.DataTables
    NodeIcon.LAYERS -> AllIcons.Nodes.DataSchema
    NodeIcon.BROADCAST -> AllIcons.Nodes.Services
    NodeIcon.SETTINGS_GEAR -> AllIcons.Nodes.ConfigFolder
}

/** A lane id from an input box; null when cancelled. */
fun askLaneId(project: Project, title: String, initial: String = ""): String? =
    Messages.showInputDialog(project, Texts.LANE_ID_PROMPT, title, null, initial, object : InputValidatorEx {
        override fun getErrorText(inputString: String): String? = laneIdProblem(inputString.trim())
        override fun checkInput(inputString: String): Boolean = getErrorText(inputString) == null
        override fun canClose(inputString: String): Boolean = checkInput(inputString)
    })?.trim()

/** A duration (`24h` preset) from an input box; null when cancelled. */
fun askDuration(project: Project, title: String, prompt: String): String? =
    Messages.showInputDialog(project, prompt, title, null, Texts.DEFAULT_DURATION, object : InputValidatorEx {
        override fun getErrorText(inputString: String): String? = durationProblem(inputString)
        override fun checkInput(inputString: String): Boolean = getErrorText(inputString) == null
        override fun canClose(inputString: String): Boolean = checkInput(inputString)
    })?.trim()

/** A popup list of [items]; [chosen] runs on the UI thread after the popup closed. */
fun <T> choose(project: Project, title: String, items: List<T>, text: (T) -> String, icon: (T) -> Icon?, chosen: (T) -> Unit) {
    val step = object : BaseListPopupStep<T>(title, items) {
        override fun getTextFor(value: T): String = text(value)
        override fun getIconFor(value: T): Icon? = icon(value)
        override fun onChosen(selectedValue: T, finalChoice: Boolean): PopupStep<*>? =
            doFinalStep { chosen(selectedValue) }
    }
    JBPopupFactory.getInstance().createListPopup(step).showCenteredInCurrentWindow(project)
}

private fun pickText(p: LanePick): String =
    listOfNotNull(p.label, p.description, p.detail).joinToString("  ·  ")

/**
 * Asks for a lane: the server's lanes (active first), `baseline` and "New lane…" when asked for, and
 * [suggestNew] (a lane named after the branch) first. [picked] gets the lane id (a new one asked for
 * with an input box titled [newTitle]).
 */
fun pickLane(
    project: Project,
    title: String,
    includeBaseline: Boolean = false,
    includeNew: Boolean = false,
    exclude: String? = null,
    suggestNew: SuggestedLane? = null,
    newTitle: String = Texts.NEW_LANE_TITLE,
    picked: (String) -> Unit,
) {
    val service = LaneProjectService.getInstance(project)
    service.exec<List<LaneInfo>>(Commands.list).thenOnEdt(project, title) { lanes ->
        val active = service.status?.activeLane ?: dev.lane.core.BASELINE
        val picks = lanePicks(lanes.filter { it.id != exclude }, PickOptions(active, includeBaseline, includeNew, suggestNew))
        choose(project, title, picks, ::pickText, { iconOf(it.icon) }) { p ->
            when {
                p.isNew && p.lane != null -> picked(p.lane!!)
                p.isNew -> askLaneId(project, newTitle, suggestNew?.lane ?: "")?.let(picked)
                else -> p.lane?.let(picked)
            }
        }
    }
}

/** The service folder to act on: the only one, or the one the user picks; null when none. */
fun chooseWorkspace(project: Project, workspaces: List<WorkspaceInfo>, chosen: (WorkspaceInfo?) -> Unit) {
    if (workspaces.size <= 1) return chosen(workspaces.firstOrNull())
    choose(project, Texts.WHICH_SERVICE, workspaces, { "${it.service ?: it.folder}  ·  ${it.branch ?: ""}  ·  ${it.folder}" }, { null }, chosen)
}
