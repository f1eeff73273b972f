// Keeps the rows of `lane.data.ls` for the Lanes tree's "Data" nodes (the counterpart of
// vscode-extension/src/laneData.ts): asked again when the status's revision changes (a deploy, a
// deleted lane), not on every pushed status, since the server asks each data server for sizes.

package dev.lane.core

import java.util.concurrent.CompletableFuture
import java.util.concurrent.atomic.AtomicBoolean

/**
 * [source] sends `lane.data.ls`; [changed] is called when the rows differ from the last ones;
 * [log] gets a line when the server could not answer.
 */
class LaneDataRows(
    private val source: (DataLsArgs) -> CompletableFuture<List<DataInfo>>,
    private val changed: () -> Unit,
    private val log: (String) -> Unit,
) {
    @Volatile
    private var revision: String? = null
    private val pending = AtomicBoolean(false)

    /** The last rows the server answered; null until it did. */
    @Volatile
    var rows: List<DataInfo>? = null
        private set

    /** Asks the server again now (after an import or a restore changed sizes, not the revision). */
    fun reload(status: LaneStatus?) {
        revision = null
        update(status)
    }

    /** Asks the server again when [status] is of another revision than the last asked. */
    fun update(status: LaneStatus?) {
        if (status == null || status.backendError != null || status.revision == revision) return
        if (!pending.compareAndSet(false, true)) return
        val asked = status.revision
        val answer = try {
            source(DataLsArgs(null, null))
        } catch (e: RuntimeException) {
            CompletableFuture.failedFuture(e)
        }
        answer.whenComplete { r, e ->
            try {
                if (e != null) {
                    log("lane: lane.data.ls: ${toUserError(e).message}")
                } else {
                    revision = asked
                    val before = rows
                    rows = r
                    if (r != before) changed()
                }
            } finally {
                pending.set(false)
            }
        }
    }
}
