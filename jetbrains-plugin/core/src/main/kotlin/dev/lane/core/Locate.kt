// Finding the `lane` binary: env `LANE_SERVER_PATH` → the plugin's server-path setting → `lane` on
// PATH → the usual install locations (an IDE started from a desktop launcher often gets no login
// shell's PATH, so `cargo install`'s directory may be missing from it). The order of
// vscode-extension/src/locate.ts. Pure apart from the file check, which tests replace.

package dev.lane.core

import java.io.File

enum class Source { ENV, SETTING, PATH, INSTALL_DIR }

data class Located(val path: String, val source: Source)

sealed class LocateResult {
    data class Found(val located: Located) : LocateResult()
    data class NotFound(val tried: List<String>) : LocateResult()
}

data class Lookup(
    /** `LANE_SERVER_PATH`. */
    val env: String? = null,
    /** The server-path setting. */
    val setting: String? = null,
    /** `PATH`. */
    val pathVar: String? = null,
    /** `CARGO_HOME` (where `cargo install` puts binaries, under `bin/`). */
    val cargoHome: String? = null,
    /** Expands `~` at the start of a path; also the base of `~/.cargo/bin` and `~/.local/bin`. */
    val home: String? = null,
    val isExecutable: (String) -> Boolean = ::isExecutableFile,
)

fun isExecutableFile(p: String): Boolean = File(p).let { it.isFile && it.canExecute() }

private fun expandHome(p: String, home: String?): String =
    if (home != null && (p == "~" || p.startsWith("~/"))) home + p.substring(1) else p

fun locateServer(l: Lookup): LocateResult {
    // An explicit choice (env or setting) that is wrong is an error, not a reason to fall through:
    // silently running another `lane` would be surprising.
    if (!l.env.isNullOrBlank()) {
        val p = expandHome(l.env.trim(), l.home)
        return if (l.isExecutable(p)) LocateResult.Found(Located(p, Source.ENV)) else LocateResult.NotFound(listOf("LANE_SERVER_PATH=$p"))
    }
    if (!l.setting.isNullOrBlank()) {
        val p = expandHome(l.setting.trim(), l.home)
        return if (l.isExecutable(p)) LocateResult.Found(Located(p, Source.SETTING)) else LocateResult.NotFound(listOf("server path setting=$p"))
    }
    val onPath = (l.pathVar ?: "").split(File.pathSeparatorChar).filter { it.isNotEmpty() }
    for (dir in onPath) {
        val p = File(dir, "lane").path
        if (l.isExecutable(p)) return LocateResult.Found(Located(p, Source.PATH))
    }
    val tried = mutableListOf("PATH")
    for (dir in installDirs(l.cargoHome, l.home)) {
        if (dir in onPath) continue
        val p = File(dir, "lane").path
        if (l.isExecutable(p)) return LocateResult.Found(Located(p, Source.INSTALL_DIR))
        tried.add(dir)
    }
    return LocateResult.NotFound(tried)
}

/** The directories `lane` is usually installed into, in the order they are searched after PATH:
 * `cargo install`'s (`$CARGO_HOME/bin`, else `~/.cargo/bin`), `~/.local/bin`, `/usr/local/bin`. */
fun installDirs(cargoHome: String?, home: String?): List<String> {
    val dirs = mutableListOf<String>()
    if (!cargoHome.isNullOrBlank()) dirs.add(File(expandHome(cargoHome.trim(), home), "bin").path)
    if (!home.isNullOrBlank()) {
        dirs.add(File(File(home, ".cargo"), "bin").path)
        dirs.add(File(File(home, ".local"), "bin").path)
    }
    dirs.add("/usr/local/bin")
    return dirs.distinct()
}

/** Where the server path is set in the IDE. */
const val SERVER_PATH_SETTING_NAME = "Settings → Tools → Lane → Path to lane"

/** What the user reads when no server was found: where it looked and how to fix it. */
fun serverNotFoundText(tried: List<String>): String =
    "Lane: server not found: no lane binary (looked in ${tried.joinToString(", ")}). " +
        "Install it with \"cargo install --path server/cli\" in the lane repository, or set " +
        "$SERVER_PATH_SETTING_NAME to the binary."

/** The trace levels of `$/setTrace` and `initialize.trace`. */
enum class TraceLevel(val wire: String) {
    OFF("off"),
    MESSAGES("messages"),
    VERBOSE("verbose"),
    ;

    companion object {
        fun parse(s: String?): TraceLevel = entries.firstOrNull { it.wire == s } ?: OFF
    }
}

/** The plugin's settings (Settings → Tools → Lane), as the core sees them. */
data class LaneSettings(
    /** Path to the `lane` binary; empty: `LANE_SERVER_PATH`, then `lane` on PATH. */
    val serverPath: String = "",
    /** The lane header put in copied requests; empty: the one the server reports. */
    val laneHeader: String = "",
    val trace: TraceLevel = TraceLevel.OFF,
) {
    /** The header for copied requests: the setting, else the server's. */
    fun headerFor(status: LaneStatus): String = laneHeader.trim().ifEmpty { status.laneHeader }

    /** A problem with the header setting (null when fine): it must be an HTTP header name. */
    fun laneHeaderProblem(): String? {
        val h = laneHeader.trim()
        return if (h.isEmpty() || Regex("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$").matches(h)) null else "Not an HTTP header name: $h"
    }
}
