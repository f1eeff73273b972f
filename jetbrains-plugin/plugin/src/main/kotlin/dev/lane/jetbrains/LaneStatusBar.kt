// The status-bar lane indicator: `Lane: feature-x · feat/login · 3/3 healthy` (no U+26D9 glyph: it
// renders as an empty box where fonts lack it). It renders the pushed
// status only (never asks the server itself); a click opens Switch Traffic, or the settings when
// the binary is missing, or restarts a stopped server.

package dev.lane.jetbrains

import com.intellij.openapi.actionSystem.ActionManager
import com.intellij.openapi.actionSystem.ActionPlaces
import com.intellij.openapi.fileEditor.FileEditorManager
import com.intellij.openapi.options.ShowSettingsUtil
import com.intellij.openapi.project.Project
import com.intellij.openapi.wm.StatusBar
import com.intellij.openapi.wm.StatusBarWidget
import com.intellij.openapi.wm.StatusBarWidgetFactory
import com.intellij.util.Consumer
import dev.lane.core.LaneActions
import dev.lane.core.ServerState
import dev.lane.core.proxyLine
import dev.lane.core.Texts
import dev.lane.core.statusBarText
import dev.lane.core.statusBarTooltipHtml
import dev.lane.core.statusBarWarns
import java.awt.Component
import java.awt.event.MouseEvent

const val WIDGET_ID = "lane.indicator"

class LaneStatusBarWidgetFactory : StatusBarWidgetFactory {
    override fun getId(): String = WIDGET_ID

    override fun getDisplayName(): String = "Lane"

    override fun isAvailable(project: Project): Boolean = true

    override fun createWidget(project: Project): StatusBarWidget = LaneStatusBarWidget(project)
}

class LaneStatusBarWidget(private val project: Project) : StatusBarWidget, StatusBarWidget.TextPresentation {
    private var statusBar: StatusBar? = null
    private val service get() = LaneProjectService.getInstance(project)

    override fun ID(): String = WIDGET_ID

    override fun getPresentation(): StatusBarWidget.WidgetPresentation = this

    override fun install(statusBar: StatusBar) {
        this.statusBar = statusBar
        service.onChange(this) { statusBar.updateWidget(ID()) }
    }

    /** The file being edited (a monorepo has several services), else the project's directory. */
    private fun folder(): String? =
        FileEditorManager.getInstance(project).selectedFiles.firstOrNull()?.takeIf { it.isInLocalFileSystem }?.path
            ?: project.basePath

    override fun getText(): String = when (service.serverState) {
        ServerState.MISSING -> Texts.NOT_FOUND_TEXT
        ServerState.STOPPED -> Texts.STOPPED_TEXT
        else -> {
            val text = statusBarText(service.status, folder())
            if (statusBarWarns(service.status)) "⚠ $text" else text
        }
    }

    override fun getAlignment(): Float = Component.LEFT_ALIGNMENT

    override fun getTooltipText(): String = when (service.serverState) {
        ServerState.MISSING -> Texts.notFoundTooltip(service.missingTried)
        ServerState.STOPPED -> Texts.STOPPED_TOOLTIP
        else -> statusBarTooltipHtml(service.status, folder(), proxyLine(service.proxyRunning, service.proxyListen))
    }

    override fun getClickConsumer(): Consumer<MouseEvent> = Consumer { e ->
        when (service.serverState) {
            ServerState.MISSING -> ShowSettingsUtil.getInstance().showSettingsDialog(project, LaneConfigurable::class.java)
            ServerState.STOPPED -> service.restart()
            else -> {
                val action = ActionManager.getInstance().getAction(LaneActions.SWITCH) ?: return@Consumer
                ActionManager.getInstance().tryToExecute(action, e, e.component, ActionPlaces.STATUS_BAR_PLACE, true)
            }
        }
    }

    override fun dispose() {
        statusBar = null
    }
}
