// The Lanes tree's Data node and the data actions' texts and choices: the cases of the VS Code
// extension's dataModel and dataOps unit tests, same values and same texts.

package dev.lane.core

import org.eclipse.lsp4j.jsonrpc.ResponseErrorException
import org.eclipse.lsp4j.jsonrpc.messages.ResponseError
import org.junit.jupiter.api.Test
import java.time.Instant
import java.util.concurrent.CompletableFuture
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

class DataTest {
    private val rows = listOf(
        DataInfo("feature-x", "orders", "mysql", "orders__lane_feature_x", "32768 bytes", "2 rows/table, 1048576 bytes"),
        DataInfo("feature-x", "cache", "redis", "41", "3 keys", "pool 41..=44"),
        DataInfo("feature-x", "sessions", "redis", "lane:feature-x:", "40 keys, ~6400 bytes (approximate)", null),
        DataInfo("team", "config", "apollo", "lane-team", null, null),
        DataInfo("gone", "cache", "redis", "42", null, null),
    )

    private val backups = listOf(
        DataBackupInfo("feature-x", "20261130T090000Z", "/h/backups/feature-x/20261130T090000Z.lanedata", 2048),
        DataBackupInfo("other", "20261130T100000Z", "/h/backups/other/20261130T100000Z.lanedata", 10),
        DataBackupInfo("feature-x", "20261130T124500Z", "/h/backups/feature-x/20261130T124500Z.lanedata", 1536000),
    )

    private fun render(nodes: List<TreeNode>, indent: String = ""): List<String> = nodes.flatMap { n ->
        val desc = n.description?.let { " — $it" } ?: ""
        val kind = when (n.kind) {
            NodeKind.DATA_BINDING -> "dataBinding"
            else -> n.kind.name.lowercase()
        }
        listOf("$indent${n.label}$desc [$kind:${n.icon.codicon}]") + render(n.children, "$indent  ")
    }

    @Test
    fun `the Data node lists a lane's bindings and copies, sorted, first under the lane`() {
        val tree = render(withDataNodes(buildTree(sampleStatus()), rows))
        val x = tree.indexOf("feature-x — active · 2/3 healthy · expires in 5h 12m · 15 req/min [lane:debug-stackframe]")
        assertEquals(
            listOf(
                "  Data — 3 bindings [data:database]",
                "    cache — redis · 41 · 3 keys · pool 41..=44 [dataBinding:layers]",
                "    orders — mysql · orders__lane_feature_x · 32768 bytes · 2 rows/table, 1048576 bytes [dataBinding:database]",
                "    sessions — redis · lane:feature-x: · 40 keys, ~6400 bytes (approximate) [dataBinding:layers]",
            ),
            tree.subList(x + 1, x + 5),
        )
        val team = tree.indexOf("team — expired · 0 req/min [lane:git-merge]")
        assertEquals(
            listOf(
                "  Data — 1 binding [data:database]",
                "    config — apollo · lane-team [dataBinding:settings-gear]",
                "  no personal versions yet [message:info]",
            ),
            tree.subList(team + 1, team + 4),
        )
        assertFalse(tree.any { it.contains("42") }, "a lane not in the status gets no node")
    }

    @Test
    fun `the Data node's tooltips say what each copy is`() {
        val data = assertNotNull(dataNode("feature-x", rows))
        assertEquals("What lane feature-x owns of its data sources; removed with the lane.", data.tooltip)
        assertEquals(
            "cache (redis) of lane feature-x\nthe lane's own copy: 41\nsize: 3 keys\nquota: pool 41..=44",
            data.children[0].tooltip,
        )
        val config = assertNotNull(dataNode("team", rows)).children.single()
        assertEquals(
            "config (apollo) of lane team\nthe lane's own copy: lane-team\n" +
                "size: unknown (no lane.toml here declares the binding, or its server did not answer)\nquota: -",
            config.tooltip,
        )
        assertFalse(data.expandedByDefault, "collapsed until opened")
    }

    @Test
    fun `nothing is added when no lane owns data or the rows are not known yet`() {
        val plain = buildTree(sampleStatus())
        assertEquals(plain, withDataNodes(plain, null))
        assertEquals(plain, withDataNodes(plain, emptyList()))
        assertNull(dataNode(BASELINE, rows))
    }

    @Test
    fun `ids are unique and carry the lane`() {
        val ids = mutableSetOf<String>()
        fun walk(ns: List<TreeNode>) {
            for (n in ns) {
                assertTrue(ids.add(n.id), "duplicate id ${n.id}")
                assertNotNull(n.lane, "${n.id} has a lane")
                walk(n.children)
            }
        }
        walk(withDataNodes(buildTree(sampleStatus()), rows))
        assertTrue("lane:feature-x/data/orders" in ids)
        assertTrue("lane:feature-x/data" in ids)
    }

    @Test
    fun `the Data node's menu has the four actions, a binding's export and import`() {
        val x = withDataNodes(buildTree(sampleStatus()), rows)[0]
        val data = x.children[0]
        assertEquals(
            listOf(LaneActions.EXPORT_DATA, LaneActions.IMPORT_DATA, LaneActions.BACKUP_DATA, LaneActions.RESTORE_DATA),
            nodeActions(data),
        )
        assertEquals(listOf(LaneActions.EXPORT_DATA, LaneActions.IMPORT_DATA), nodeActions(data.children[0]))
        assertEquals(
            listOf("Export Data…", "Import Data…", "Back Up Data", "Restore Data…"),
            nodeActions(data).map { LaneActions.spec(it).title },
        )
        // Also in Tools → Lane (they then ask for the lane), after Move Version.
        val menu = LaneActions.MENU.map { it.id }
        assertEquals(
            listOf(LaneActions.ASSIGN, LaneActions.EXPORT_DATA, LaneActions.IMPORT_DATA, LaneActions.BACKUP_DATA, LaneActions.RESTORE_DATA),
            menu.subList(menu.indexOf(LaneActions.ASSIGN), menu.indexOf(LaneActions.ASSIGN) + 5),
        )
    }

    @Test
    fun `data actions apply to a Data node's lane, or to one binding`() {
        val x = withDataNodes(buildTree(sampleStatus()), rows)[0]
        assertEquals(DataTarget("feature-x", null), dataTarget(x.children[0]))
        assertEquals(DataTarget("feature-x", "cache"), dataTarget(x.children[0].children[0]))
        assertEquals(DataTarget("feature-x", null), dataTarget(x))
        assertNull(dataTarget(x.children[1]), "a service node")
        assertNull(dataTarget(null))
        assertNull(dataTarget(buildTree(sampleStatus()).last()), "baseline has no lane data")
    }

    @Test
    fun `an export file is named for the lane, binding and time`() {
        val now = Instant.parse("2026-11-30T09:05:41Z")
        assertEquals("feature-x-20261130-0905.lanedata", exportFileName(DataTarget("feature-x"), now))
        assertEquals("feature-x-orders-20261130-0905.lanedata", exportFileName(DataTarget("feature-x", "orders"), now))
    }

    @Test
    fun `a lane's backups are listed newest first, with time and size`() {
        val picks = backupPicks(backups, "feature-x")
        assertEquals(
            listOf(
                Triple("2026-11-30 12:45:00 UTC", "1.5 MB · newest", "20261130T124500Z"),
                Triple("2026-11-30 09:00:00 UTC", "2.0 KB", "20261130T090000Z"),
            ),
            picks.map { Triple(it.label, it.description, it.name) },
        )
        assertEquals("/h/backups/feature-x/20261130T124500Z.lanedata", picks[0].detail)
        assertEquals(emptyList(), backupPicks(backups, "nobody"))
        assertEquals("odd", backupTime("odd"))
        assertEquals("Restore lane feature-x's data from…", DataTexts.restoreTitle("feature-x"))
        assertEquals("Lane: lane feature-x has no backups yet.", DataTexts.noBackups("feature-x"))
    }

    @Test
    fun `sizes in words`() {
        assertEquals("0 bytes", sizeText(0))
        assertEquals("1 byte", sizeText(1))
        assertEquals("1023 bytes", sizeText(1023))
        assertEquals("1.0 KB", sizeText(1024))
        assertEquals("50 MB", sizeText(50L * 1024 * 1024))
        assertEquals("3.0 TB", sizeText(3L shl 40))
        assertEquals("2048 TB", sizeText(2048L shl 40), "TB is the largest unit")
    }

    @Test
    fun `a replacement is confirmed and what moved is said`() {
        assertTrue(replaceConfirmText(DataTarget("x"), "a.lanedata").startsWith("Replace the data of lane x with a.lanedata?"))
        assertEquals(
            "Replace binding orders of lane x with a.lanedata? The current data is swapped out only when the whole file is in; " +
                "a failure or a cancel leaves it as it is.",
            replaceConfirmText(DataTarget("x", "orders"), "a.lanedata"),
        )
        val pick = backupPicks(backups, "feature-x")[0]
        assertTrue(
            replaceConfirmText(DataTarget("feature-x"), DataTexts.backupOf(pick))
                .startsWith("Replace the data of lane feature-x with the backup of 2026-11-30 12:45:00 UTC?"),
        )
        val r = DataTransferResult(
            lane = "feature-x",
            file = "/tmp/x.lanedata",
            bindings = listOf(
                DataBindingReport("orders", "mysql", "o__lane_feature_x", 1200, 3),
                DataBindingReport("cache", "redis", "41", 3, 0),
                DataBindingReport("events", "kafka", "orders.lane-feature-x", 9, 1),
            ),
            bytes = 1536000,
            seconds = 0.42,
            notes = listOf("binding `search` (elasticsearch) is left out: its kind is not exported yet"),
        )
        assertEquals(
            "Lane: exported lane feature-x (orders: 1200 rows, cache: 3 keys, events: 9 records; 1.5 MB, 0.4s) to /tmp/x.lanedata. " +
                "Left out: binding `search` (elasticsearch) is left out: its kind is not exported yet.",
            transferText(DataVerb.EXPORTED, r),
        )
        assertTrue(transferText(DataVerb.RESTORED, r.copy(notes = emptyList())).endsWith(" from /tmp/x.lanedata."))
        assertTrue(transferText(DataVerb.BACKED_UP, r).contains(" to /tmp/x.lanedata."))
        assertEquals(
            "Lane: imported lane e (12 bytes, 0.0s) from /f.",
            transferText(DataVerb.IMPORTED, DataTransferResult("e", "/f", emptyList(), 12, 0.01, emptyList())),
        )
    }

    @Test
    fun `an owner conflict asks before force, other errors do not`() {
        fun laneError(code: String, message: String) = toUserError(
            ResponseErrorException(ResponseError(ErrorCodes.LANE_ERROR, message, ErrorInfo(code, message, null))),
        )
        val conflict = laneError("not_owner", "lane `x` is owned by ann")
        assertTrue(dataMayForce(conflict))
        assertEquals("lane \"x\" is owned by ann Replace anyway?", DataTexts.replaceAnyway(conflict.message))
        assertFalse(dataMayForce(laneError("invalid", "no such file")))
        assertEquals(
            DataImportArgs("x", "orders", "/f.lanedata", true, null),
            dataImportArgs(DataTarget("x", "orders"), "/f.lanedata", force = true),
        )
        assertEquals(DataRestoreArgs("x", "20261130T124500Z", false, null), dataRestoreArgs("x", "20261130T124500Z"))
        assertEquals(DataExportArgs("x", null, "/f.lanedata", null), dataExportArgs(DataTarget("x"), "/f.lanedata"))
        assertEquals(DataBackupArgs("x", null), dataBackupArgs("x"))
    }

    @Test
    fun `titles and cancel texts`() {
        assertEquals("Export binding orders of lane x's data", DataTexts.exportTitle(DataTarget("x", "orders")))
        assertEquals("Export lane x's data", DataTexts.exportTitle(DataTarget("x")))
        assertEquals("Import into lane x", DataTexts.importTitle(DataTarget("x")))
        assertEquals("Lane: importing into binding c of lane x", DataTexts.taskTitle(DataVerb.IMPORTED, DataTarget("x", "c")))
        assertEquals("Lane: Import Data cancelled; the lane's data stays as it was.", DataTexts.cancelled(DataVerb.IMPORTED))
        assertEquals("Lane: Export Data cancelled.", DataTexts.cancelled(DataVerb.EXPORTED))
        assertEquals("data.export", progressKind(Commands.dataExport))
        assertEquals("deploy", progressKind(Commands.deployCurrentBranch))
        assertTrue(newProgressToken("data.restore").startsWith("lane-jetbrains/data.restore/"))
    }

    @Test
    fun `LaneDataRows asks lane data ls once per status revision and reports changes`() {
        val calls = mutableListOf<DataLsArgs>()
        var answer = rows.take(1)
        var changed = 0
        val logged = mutableListOf<String>()
        var fail = false
        val data = LaneDataRows(
            { args ->
                calls.add(args)
                if (fail) {
                    CompletableFuture.failedFuture(
                        ResponseErrorException(ResponseError(ErrorCodes.LANE_ERROR, "down", ErrorInfo("unavailable", "redis down", null))),
                    )
                } else {
                    CompletableFuture.completedFuture(answer)
                }
            },
            { changed++ },
            { logged.add(it) },
        )
        val status = sampleStatus()
        data.update(status)
        data.update(status)
        assertEquals(listOf(DataLsArgs(null, null)), calls)
        assertEquals(rows.take(1), data.rows)
        assertEquals(1, changed)
        answer = rows.take(2)
        data.update(status.copy(revision = "${status.revision}-next"))
        assertEquals(2, calls.size)
        assertEquals(2, changed)
        data.update(status.copy(revision = "r3", backendError = ErrorInfo("unavailable", "down", null)))
        assertEquals(2, calls.size, "not asked while the backend is unavailable")
        // An import changes sizes, not the revision: reload asks again for the same revision.
        val next = status.copy(revision = "${status.revision}-next")
        answer = rows.take(3)
        data.update(next)
        assertEquals(2, calls.size, "the same revision is not asked again")
        data.reload(next)
        assertEquals(3, calls.size)
        assertEquals(rows.take(3), data.rows)
        assertEquals(3, changed)
        // The same answer again: no change reported.
        data.reload(next)
        assertEquals(3, changed)
        // A failure is logged, the rows kept, and the next status asks again.
        fail = true
        data.update(status.copy(revision = "r4"))
        assertEquals(listOf("lane: lane.data.ls: redis down"), logged)
        assertEquals(rows.take(3), data.rows)
        fail = false
        data.update(status.copy(revision = "r4"))
        assertEquals(6, calls.size, "asked again after a failure")
    }
}
