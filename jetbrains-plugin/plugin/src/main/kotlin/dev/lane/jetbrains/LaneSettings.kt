// Settings → Tools → Lane: the server path, the lane header for copied requests, the trace level.
// Stored per application (like VS Code's user settings): the server runs the build and run
// commands of `lane.toml`, so which binary runs is not a project file's choice.

package dev.lane.jetbrains

import com.intellij.openapi.components.PersistentStateComponent
import com.intellij.openapi.components.Service
import com.intellij.openapi.components.State
import com.intellij.openapi.components.Storage
import com.intellij.openapi.components.service
import com.intellij.openapi.options.BoundConfigurable
import com.intellij.openapi.ui.DialogPanel
import com.intellij.openapi.ui.ValidationInfo
import com.intellij.ui.dsl.builder.AlignX
import com.intellij.ui.dsl.builder.bindItem
import com.intellij.ui.dsl.builder.bindText
import com.intellij.ui.dsl.builder.panel
import dev.lane.core.LaneSettings
import dev.lane.core.TraceLevel

@Service(Service.Level.APP)
@State(name = "LaneSettings", storages = [Storage("lane.xml")])
class LaneSettingsService : PersistentStateComponent<LaneSettingsService.State> {
    class State {
        var serverPath: String = ""
        var laneHeader: String = ""
        var trace: String = TraceLevel.OFF.wire
    }

    private var current = State()

    override fun getState(): State = current

    override fun loadState(state: State) {
        current = state
    }

    /** The settings as the core sees them. */
    val settings: LaneSettings
        get() = LaneSettings(current.serverPath, current.laneHeader, TraceLevel.parse(current.trace))

    companion object {
        fun getInstance(): LaneSettingsService = service()
    }
}

class LaneConfigurable : BoundConfigurable("Lane") {
    private val state get() = LaneSettingsService.getInstance().state

    override fun createPanel(): DialogPanel = panel {
        row("Path to lane:") {
            textField()
                .bindText(state::serverPath)
                .align(AlignX.FILL)
                .comment("Empty: the LANE_SERVER_PATH environment variable, then <code>lane</code> on PATH. Restart the server after a change.")
        }
        row("Lane header:") {
            textField()
                .bindText(state::laneHeader)
                .comment("The header put in copied requests. Empty: the header the server reports (<code>x-lane</code> by default).")
                .validationOnInput { field ->
                    LaneSettings(laneHeader = field.text).laneHeaderProblem()?.let { ValidationInfo(it, field) }
                }
        }
        row("Trace level:") {
            comboBox(TraceLevel.entries.map { it.wire })
                .bindItem({ state.trace }, { state.trace = it ?: TraceLevel.OFF.wire })
                .comment("How much <code>lane lsp</code> logs to the Language Servers console (off: warnings).")
        }
    }
}
