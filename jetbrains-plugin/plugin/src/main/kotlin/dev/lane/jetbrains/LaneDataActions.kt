// A lane's data from the Lanes tree's Data node (and a binding under it) or Tools → Lane: Export…
// (a save dialog), Import… (a file chooser, then a confirmation), Back Up, Restore… (a chooser of
// the lane's backups from `lane.data.backups`, then a confirmation). Each runs the server's
// `lane.data.*` command as a cancellable background task driven by its work-done progress, as a
// deploy is; an owner conflict asks before sending `force`. Every text is the core's (DataTexts).

package dev.lane.jetbrains

import com.intellij.notification.NotificationType
import com.intellij.openapi.fileChooser.FileChooser
import com.intellij.openapi.fileChooser.FileChooserDescriptorFactory
import com.intellij.openapi.fileChooser.FileChooserFactory
import com.intellij.openapi.fileChooser.FileSaverDescriptor
import com.intellij.openapi.progress.ProcessCanceledException
import com.intellij.openapi.progress.ProgressIndicator
import com.intellij.openapi.progress.Task
import com.intellij.openapi.project.Project
import com.intellij.openapi.project.guessProjectDir
import com.intellij.openapi.ui.Messages
import com.intellij.openapi.vfs.VirtualFile
import dev.lane.core.BackupPick
import dev.lane.core.Commands
import dev.lane.core.CommandSpec
import dev.lane.core.DataBackupInfo
import dev.lane.core.DataBackupsArgs
import dev.lane.core.DataTarget
import dev.lane.core.DataTexts
import dev.lane.core.DataTransferResult
import dev.lane.core.DataVerb
import dev.lane.core.LANE_DATA_EXTENSION
import dev.lane.core.NodeIcon
import dev.lane.core.Texts
import dev.lane.core.TreeNode
import dev.lane.core.backupPicks
import dev.lane.core.dataBackupArgs
import dev.lane.core.dataExportArgs
import dev.lane.core.dataImportArgs
import dev.lane.core.dataMayForce
import dev.lane.core.dataRestoreArgs
import dev.lane.core.dataTarget
import dev.lane.core.exportFileName
import dev.lane.core.replaceConfirmText
import dev.lane.core.toUserError
import dev.lane.core.transferText
import java.time.Instant
import java.util.concurrent.TimeUnit
import java.util.concurrent.TimeoutException

private fun laneService(project: Project) = LaneProjectService.getInstance(project)

/** How long a cancelled data task waits for the server's `cancelled` answer. */
private const val CANCEL_WAIT_MS = 30_000L

/** A data action: on the node's lane (and binding), else on the lane the user picks. */
abstract class DataAction(node: TreeNode? = null) : NodeAction(node) {
    /** The chooser's title when no node says the lane. */
    protected abstract val which: String

    final override fun perform(project: Project) {
        if (node != null) {
            // A Data or binding node (baseline owns no lane data: nothing to do there).
            val t = dataTarget(node) ?: return
            return performOn(project, t)
        }
        pickLane(project, which) { performOn(project, DataTarget(it, null)) }
    }

    /** Runs the action on [t] (also Restore's "Back Up Now"). */
    abstract fun performOn(project: Project, t: DataTarget)
}

class ExportDataAction(node: TreeNode? = null) : DataAction(node) {
    override val which: String = DataTexts.EXPORT_WHICH

    override fun performOn(project: Project, t: DataTarget) {
        val descriptor = FileSaverDescriptor(DataTexts.exportTitle(t), "")
        descriptor.withExtensionFilter(DataTexts.FILE_FILTER, LANE_DATA_EXTENSION)
        val dir: VirtualFile? = project.guessProjectDir()
        val saved = FileChooserFactory.getInstance().createSaveFileDialog(descriptor, project)
            .save(dir, exportFileName(t, Instant.now())) ?: return
        val path = saved.file.absolutePath
        runDataTask(project, DataVerb.EXPORTED, t, Commands.dataExport, dataExportArgs(t, path))
    }
}

class ImportDataAction(node: TreeNode? = null) : DataAction(node) {
    override val which: String = DataTexts.IMPORT_WHICH

    override fun performOn(project: Project, t: DataTarget) {
        val descriptor = FileChooserDescriptorFactory.createSingleFileDescriptor()
            .withTitle(DataTexts.importTitle(t))
            .withExtensionFilter(DataTexts.FILE_FILTER, LANE_DATA_EXTENSION)
        val file = FileChooser.chooseFile(descriptor, project, project.guessProjectDir()) ?: return
        val ok = Messages.showOkCancelDialog(
            project, replaceConfirmText(t, file.name), "Lane", DataTexts.REPLACE, Messages.getCancelButton(), Messages.getWarningIcon(),
        )
        if (ok != Messages.OK) return
        val path = file.toNioPath().toString()
        runDataTask(project, DataVerb.IMPORTED, t, Commands.dataImport, dataImportArgs(t, path)) { force ->
            dataImportArgs(t, path, force)
        }
    }
}

class BackupDataAction(node: TreeNode? = null) : DataAction(node) {
    override val which: String = DataTexts.BACKUP_WHICH

    override fun performOn(project: Project, t: DataTarget) {
        // A backup holds every binding of the lane.
        val lane = DataTarget(t.lane, null)
        runDataTask(project, DataVerb.BACKED_UP, lane, Commands.dataBackup, dataBackupArgs(t.lane))
    }
}

class RestoreDataAction(node: TreeNode? = null) : DataAction(node) {
    override val which: String = DataTexts.RESTORE_WHICH

    override fun performOn(project: Project, t: DataTarget) {
        val lane = DataTarget(t.lane, null)
        laneService(project).exec<DataBackupsArgs, List<DataBackupInfo>>(Commands.dataBackups, DataBackupsArgs(t.lane))
            .thenOnEdt(project, DataTexts.RESTORE_WHAT) { backups ->
                val picks = backupPicks(backups, t.lane)
                if (picks.isEmpty()) {
                    return@thenOnEdt notify(
                        project, DataTexts.noBackups(t.lane), NotificationType.INFORMATION,
                        DataTexts.BACK_UP_NOW to { BackupDataAction(node).performOn(project, lane) },
                    )
                }
                choose(project, DataTexts.restoreTitle(t.lane), picks, { p: BackupPick -> "${p.label}  ·  ${p.description}  ·  ${p.detail}" }, {
                    iconOf(NodeIcon.DATABASE)
                }) { pick -> confirmRestore(project, lane, pick) }
            }
    }

    private fun confirmRestore(project: Project, lane: DataTarget, pick: BackupPick) {
        val ok = Messages.showOkCancelDialog(
            project, replaceConfirmText(lane, DataTexts.backupOf(pick)), "Lane", DataTexts.RESTORE, Messages.getCancelButton(),
            Messages.getWarningIcon(),
        )
        if (ok != Messages.OK) return
        runDataTask(project, DataVerb.RESTORED, lane, Commands.dataRestore, dataRestoreArgs(lane.lane, pick.name)) { force ->
            dataRestoreArgs(lane.lane, pick.name, force)
        }
    }
}

private fun whatOf(verb: DataVerb): String = when (verb) {
    DataVerb.EXPORTED -> DataTexts.EXPORT_WHAT
    DataVerb.IMPORTED -> DataTexts.IMPORT_WHAT
    DataVerb.BACKED_UP -> DataTexts.BACKUP_WHAT
    DataVerb.RESTORED -> DataTexts.RESTORE_WHAT
}

/**
 * Runs [spec] with [args] as a cancellable background task: the server's progress (binding, step,
 * percentage) drives the indicator; Cancel sends `window/workDoneProgress/cancel` for the task's
 * token (the server removes what it staged and answers `cancelled`). [forced] (an import or a
 * restore) gives the arguments with `force`: an owner conflict asks, then runs again with them.
 * After an import or a restore, the Data node's sizes are asked again.
 */
private fun <A : Any> runDataTask(
    project: Project,
    verb: DataVerb,
    t: DataTarget,
    spec: CommandSpec<A, *>,
    args: A,
    forced: ((Boolean) -> A)? = null,
) {
    object : Task.Backgroundable(project, DataTexts.taskTitle(verb, t), true) {
        private var result: DataTransferResult? = null

        override fun run(indicator: ProgressIndicator) {
            indicator.isIndeterminate = false
            indicator.fraction = 0.0
            val pending = laneService(project).execWithProgress<A, DataTransferResult>(spec, args) { ev ->
                ev.title?.let { indicator.text = Texts.progressTitle(it) }
                ev.message?.let { indicator.text2 = it }
                ev.percentage?.let { indicator.fraction = it / 100.0 }
            }
            val call = pending.get(60, TimeUnit.SECONDS)
            var cancelSentAt = 0L
            while (true) {
                try {
                    result = call.result.get(200, TimeUnit.MILLISECONDS)
                    return
                } catch (_: TimeoutException) {
                    // still running
                }
                if (indicator.isCanceled && cancelSentAt == 0L) {
                    // The server stops, removes what it staged and answers `cancelled`: waited for
                    // (the answer ends the loop with the exception it completes with).
                    call.cancelProgress()
                    cancelSentAt = System.currentTimeMillis()
                } else if (cancelSentAt != 0L && System.currentTimeMillis() - cancelSentAt > CANCEL_WAIT_MS) {
                    // No answer: drop the request ($/cancelRequest), as a deploy's Cancel does.
                    call.cancel()
                    throw ProcessCanceledException()
                }
            }
        }

        override fun onSuccess() {
            val r = result ?: return
            if (verb == DataVerb.IMPORTED || verb == DataVerb.RESTORED) laneService(project).reloadData()
            notify(project, transferText(verb, r))
        }

        override fun onCancel() = notify(project, DataTexts.cancelled(verb))

        override fun onThrowable(error: Throwable) {
            val u = toUserError(error)
            if (u.cancelled || error is ProcessCanceledException) return notify(project, DataTexts.cancelled(verb))
            if (forced != null && dataMayForce(u)) {
                val ok = Messages.showOkCancelDialog(
                    project, DataTexts.replaceAnyway(u.message), "Lane", Texts.FORCE, Messages.getCancelButton(), Messages.getWarningIcon(),
                )
                if (ok == Messages.OK) runDataTask(project, verb, t, spec, forced(true))
                return
            }
            reportFailure(project, whatOf(verb), error)
        }
    }.queue()
}
