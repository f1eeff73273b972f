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

/** One line for a notification: `Lane: <what> failed: <message>. <help>` */
fun errorText(what: String, u: UserError): String {
    val help = if (!u.help.isNullOrEmpty()) " ${u.help}" else ""
    return "Lane: $what failed: ${u.message}$help"
}

private val LANE_ID = Regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
private val DURATION = Regex("""^\s*\d+\s*[smhd]\s*$""")

/** Lane ids the server accepts: lowercase RFC 1123 label, 1–40 chars. Only for input hints; the
 * server validates again. Null when fine. */
fun laneIdProblem(id: String): String? = when {
    id.isEmpty() -> "Enter a lane id."
    id.length > 40 -> "At most 40 characters."
    !LANE_ID.matches(id) -> "Lowercase letters, digits and `-`, not at either end."
    id == BASELINE -> "`baseline` is reserved."
    else -> null
}

/** Durations the input boxes accept (`30m`, `2h`, `3d`); null when fine. */
fun durationProblem(text: String): String? = if (DURATION.matches(text)) null else "A duration like 30m, 2h or 3d"
