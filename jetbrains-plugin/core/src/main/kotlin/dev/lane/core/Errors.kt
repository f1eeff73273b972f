// Turns a failed command's JSON-RPC error into what the user reads (the counterpart of
// vscode-extension/src/errors.ts, with the same texts). Pure.

package dev.lane.core

import com.google.gson.Gson
import com.google.gson.JsonElement
import org.eclipse.lsp4j.jsonrpc.ResponseErrorException
import java.util.concurrent.CancellationException
import java.util.concurrent.CompletionException
import java.util.concurrent.ExecutionException

data class UserError(
    /** The user (or the server on their behalf) cancelled: say so quietly, not as an error. */
    val cancelled: Boolean,
    /** The lane error code (`not_owner`, `build_failed`, …), when the server sent one. */
    val code: String? = null,
    val message: String,
    val help: String? = null,
    /** The JSON-RPC error code, when the server answered an error. */
    val rpcCode: Int? = null,
)

private val gson = Gson()

/** The [ErrorInfo] in a JSON-RPC error's `data`, as LSP4J hands it over (a Gson tree, or a map). */
fun errorInfoOf(data: Any?): ErrorInfo? {
    val tree: JsonElement = when (data) {
        null -> return null
        is JsonElement -> data
        else -> gson.toJsonTree(data)
    }
    if (!tree.isJsonObject) return null
    val o = tree.asJsonObject
    val code = o.get("code")?.takeIf { it.isJsonPrimitive && it.asJsonPrimitive.isString }?.asString ?: return null
    val message = o.get("message")?.takeIf { it.isJsonPrimitive }?.asString ?: ""
    val help = o.get("help")?.takeIf { it.isJsonPrimitive }?.asString
    return ErrorInfo(code, message, help)
}

fun toUserError(e: Throwable): UserError {
    var t: Throwable = e
    while ((t is CompletionException || t is ExecutionException) && t.cause != null) t = t.cause!!
    if (t is CancellationException) return UserError(cancelled = true, message = "cancelled")
    if (t is ResponseErrorException) {
        val err = t.responseError
        if (err.code == ErrorCodes.REQUEST_CANCELLED) return UserError(cancelled = true, message = "cancelled", rpcCode = err.code)
        val info = if (err.code == ErrorCodes.LANE_ERROR) errorInfoOf(err.data) else null
        if (info != null) {
            return UserError(
                cancelled = info.code == "cancelled",
                code = info.code,
                message = info.message.ifEmpty { err.message ?: "" },
                help = info.help,
                rpcCode = err.code,
            )
        }
        return UserError(cancelled = false, message = err.message ?: t.toString(), rpcCode = err.code)
    }
    return UserError(cancelled = false, message = t.message ?: t.toString())
}

/** Ends [t] as a sentence. */
private fun sentence(t: String): String {
    val s = t.trim().removeSuffix(":")
    return if (s.endsWith(".") || s.endsWith("!") || s.endsWith("?")) s else "$s."
}

private val BACKTICKED = Regex("`([^`]*)`")

/** Notifications show no markdown: `x` reads better as "x". */
fun plain(t: String): String = BACKTICKED.replace(t) { "\"${it.groupValues[1]}\"" }

/**
 * One notification: `Lane: <what> failed: <message>. <Help>.` Only the message's first line: the
 * rest (a build's last output lines) is in the output the notification's button opens.
 */
fun errorText(what: String, u: UserError): String {
    val first = u.message.lineSequence().first()
    val help = if (!u.help.isNullOrEmpty()) " " + sentence(plain(u.help)).replaceFirstChar { it.uppercaseChar() } else ""
    return "Lane: $what failed: ${sentence(plain(first))}$help"
}

/** The button a failure's notification offers, for the lane error codes whose cause is in the output. */
fun errorAction(u: UserError): String? = when (u.code) {
    "build_failed" -> "Show Build Output"
    "start_failed", "unhealthy" -> "Show Service Output"
    else -> null
}

private val LANE_ID = Regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
private val DURATION = Regex("""^\s*\d+\s*[smhd]\s*$""")

/** Lane ids the server accepts: lowercase RFC 1123 label, 1–40 chars. Only for input hints; the
 * server validates again. Null when fine. */
fun laneIdProblem(id: String): String? = when {
    id.isEmpty() -> "Enter a lane id."
    id.length > 40 -> "At most 40 characters."
    !LANE_ID.matches(id) -> "Only lowercase letters, digits and hyphens (-), starting and ending with a letter or digit."
    id == BASELINE -> "The name \"baseline\" is reserved: it means no lane."
    else -> null
}

/** Durations the input boxes accept (`30m`, `2h`, `3d`); null when fine. */
fun durationProblem(text: String): String? = if (DURATION.matches(text)) null else "A duration like 30m, 2h or 3d"
