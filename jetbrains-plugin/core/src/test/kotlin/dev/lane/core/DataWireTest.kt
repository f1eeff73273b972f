// The data actions against the real `lane lsp` and a real Redis (scripts/services.sh redis, which
// jetbrains-plugin/scripts/test.sh runs): a lane deployed with a Redis binding owns a database of
// its pool (indexes 53–55 only: baseline 53, pool 54–55); `lane.data.ls` fills the tree's Data node;
// export, import, backup, backups and restore move its keys with work-done progress, answer what
// the action's texts are built from, refuse bad input and another developer's lane without
// `force`; a cancelled import leaves the lane's keys as they were. Its own LANE_HOME, HOME and git repo; LANE_PORT_RANGE 26400-26449.

package dev.lane.core

import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assumptions
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.MethodOrderer
import org.junit.jupiter.api.Order
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.TestMethodOrder
import java.io.BufferedInputStream
import java.io.File
import java.net.InetSocketAddress
import java.net.Socket
import java.net.URI
import java.nio.file.Files
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import kotlin.test.fail

/** A minimal RESP client: enough to select a database, set, read and delete keys. */
private class Resp(host: String, port: Int) : AutoCloseable {
    private val socket = Socket().apply { connect(InetSocketAddress(host, port), 3000); soTimeout = 10_000 }
    private val input = BufferedInputStream(socket.getInputStream())
    private val output = socket.getOutputStream()

    private fun encode(b: StringBuilder, args: List<String>) {
        b.append("*${args.size}\r\n")
        for (a in args) b.append("$").append(a.toByteArray().size).append("\r\n").append(a).append("\r\n")
    }

    fun cmd(vararg args: String): Any? {
        val b = StringBuilder()
        encode(b, args.toList())
        output.write(b.toString().toByteArray())
        output.flush()
        return read()
    }

    /** Sends every command, then reads every reply. */
    fun pipeline(cmds: List<List<String>>) {
        val b = StringBuilder()
        for (c in cmds) encode(b, c)
        output.write(b.toString().toByteArray())
        output.flush()
        repeat(cmds.size) { read() }
    }

    private fun line(): String {
        val b = StringBuilder()
        while (true) {
            val c = input.read()
            check(c >= 0) { "Redis closed the connection" }
            if (c == '\r'.code) {
                input.read()
                return b.toString()
            }
            b.append(c.toChar())
        }
    }

    private fun read(): Any? {
        val l = line()
        return when (l[0]) {
            '+' -> l.substring(1)
            '-' -> error("Redis: ${l.substring(1)}")
            ':' -> l.substring(1).toLong()
            '$' -> {
                val n = l.substring(1).toInt()
                if (n < 0) null else String(input.readNBytes(n + 2), Charsets.UTF_8).dropLast(2)
            }
            '*' -> {
                val n = l.substring(1).toInt()
                if (n < 0) null else (0 until n).map { read() }
            }
            else -> error("Redis: unexpected reply $l")
        }
    }

    override fun close() = socket.close()
}

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation::class)
class DataWireTest {
    private val bin = laneBin()
    private val root: File = Files.createTempDirectory("lane-jetbrains-data-").toFile()
    private val repo = File(root, "repos/b")
    private val redisUrl = URI((System.getenv("LANE_TEST_REDIS_URL") ?: "redis://127.0.0.1:26379").removeSuffix("/"))
    private val lane = "jbd-${ProcessHandle.current().pid()}"
    private val otherLane = "jbd-bob-${ProcessHandle.current().pid()}"
    private val env = mapOf(
        "PATH" to (System.getenv("PATH") ?: "/usr/bin:/bin"),
        "LANE_HOME" to File(root, "home").path,
        "LANE_ROUTER_ADDR" to "127.0.0.1:0",
        "LANE_PORT_RANGE" to "26400-26449",
        "HOME" to root.path,
        "XDG_CONFIG_HOME" to File(root, "config").path,
        "GIT_CONFIG_NOSYSTEM" to "1",
        "GIT_AUTHOR_NAME" to "Alice",
        "GIT_AUTHOR_EMAIL" to "alice@example.com",
        "GIT_COMMITTER_NAME" to "Alice",
        "GIT_COMMITTER_EMAIL" to "alice@example.com",
        "USER" to "alice",
        "NO_COLOR" to "1",
        "RUST_LOG" to "info",
    )
    private lateinit var client: LaneClient
    private lateinit var redis: Resp
    private var backupName: String? = null

    private val manifest =
        "app = \"demo\"\nproc = \"b\"\n\n[build]\ncommand = \"echo building\"\n\n" +
            "[run]\ncommand = \"'$bin' sample-service --app demo --name b --port {port}\"\n\n" +
            "[health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n\n" +
            "[data.cache]\nkind = \"redis\"\nurl = \"redis://${redisUrl.host}:${redisUrl.port}/53\"\n" +
            "env = \"REDIS_URL\"\npool = [54, 55]\n"

    private fun run(vararg cmd: String, dir: File = repo, extra: Map<String, String> = emptyMap()): String {
        val pb = ProcessBuilder(*cmd).directory(dir).redirectErrorStream(true)
        pb.environment().clear()
        pb.environment().putAll(env + extra)
        val p = pb.start()
        val out = p.inputStream.bufferedReader().readText()
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "${cmd.toList()} did not finish")
        assertEquals(0, p.exitValue(), "${cmd.toList()}: $out")
        return out
    }

    private fun stderrTail(): String = client.stderr.toString().takeLast(3000)

    private fun flush(vararg dbs: Int) {
        for (db in dbs) {
            redis.cmd("SELECT", db.toString())
            redis.cmd("FLUSHDB")
        }
    }

    /** The lane's own database (its binding's target in `lane.data.ls`), selected. */
    private fun laneDb(): Int {
        val row = client.dataLs(DataLsArgs(lane, null)).get(30, TimeUnit.SECONDS).single()
        val db = row.target.toInt()
        redis.cmd("SELECT", db.toString())
        return db
    }

    /** The lane's keys (its claim key left out) with their values. */
    private fun laneKeys(): Map<String, String?> {
        laneDb()
        @Suppress("UNCHECKED_CAST")
        val keys = (redis.cmd("KEYS", "jbd:*") as List<String>).sorted()
        return keys.associateWith { redis.cmd("GET", it) as String? }
    }

    private fun failure(body: () -> Unit): UserError {
        try {
            body()
        } catch (e: ExecutionException) {
            return toUserError(e)
        }
        fail("expected the call to fail")
    }

    @BeforeAll
    fun start() {
        val up = runCatching { Resp(redisUrl.host, redisUrl.port) }
        if (up.isFailure) {
            val why = "Redis at $redisUrl is not reachable (start it: bash scripts/services.sh redis): ${up.exceptionOrNull()}"
            if (System.getenv("CI") == "true") fail(why)
            Assumptions.abort<Unit>(why)
        }
        redis = up.getOrThrow()
        flush(53, 54, 55)
        redis.cmd("SELECT", "53")
        redis.cmd("SET", "jbd:baseline", "not the lane's")
        repo.mkdirs()
        File(repo, "lane.toml").writeText(manifest)
        run("git", "init", "-q", "-b", "main")
        run("git", "add", ".")
        run("git", "commit", "-q", "-m", "initial")
        client = LaneClient.start(bin, repo, env, inheritEnv = false)
        client.initialize(listOf(repo)).get(30, TimeUnit.SECONDS)
        client.initialized()
    }

    @AfterAll
    fun stop() {
        if (this::client.isInitialized) {
            runCatching { client.delete(deleteArgs(lane, force = true)).get(60, TimeUnit.SECONDS) }
            runCatching { client.delete(deleteArgs(otherLane, force = true)).get(60, TimeUnit.SECONDS) }
            client.close()
            runCatching { run(bin, "down", dir = root) }
        }
        if (this::redis.isInitialized) {
            runCatching { flush(53, 54, 55) }
            redis.close()
        }
        root.deleteRecursively()
    }

    @Test
    @Order(1)
    fun `no Data node before a lane owns data, then one with the lane's Redis database`() {
        assertEquals(emptyList(), client.dataLs(DataLsArgs(null, null)).get(30, TimeUnit.SECONDS))
        val ws = client.status().get(30, TimeUnit.SECONDS).workspaces.single()
        val r = client.deploy(deployArgs(ws, lane)).result.get(120, TimeUnit.SECONDS)
        assertEquals(InstanceState.HEALTHY, r.state, stderrTail())
        val rows = client.dataLs(DataLsArgs(null, null)).get(30, TimeUnit.SECONDS)
        val row = rows.single()
        assertEquals(lane, row.lane)
        assertEquals("cache", row.binding)
        assertEquals(DataKind.REDIS, row.kind)
        assertTrue(row.target == "54" || row.target == "55", "a database of the pool: $row")
        assertNotNull(row.size, "the binding is declared here, so its size is known: $row")
        val tree = withDataNodes(buildTree(client.status().get(30, TimeUnit.SECONDS)), rows)
        val laneNode = tree.single { it.id == "lane:$lane" }
        val data = laneNode.children.first()
        assertEquals("lane:$lane/data", data.id)
        assertEquals("Data — 1 binding", "${data.label} — ${data.description}")
        val binding = data.children.single()
        assertEquals("lane:$lane/data/cache", binding.id)
        assertTrue(binding.description!!.startsWith("redis · ${row.target} · "), binding.description)
        assertEquals(DataTarget(lane, "cache"), dataTarget(binding))
        assertEquals(emptyList(), client.dataBackups(DataBackupsArgs(lane)).get(30, TimeUnit.SECONDS))
        assertEquals(emptyList(), backupPicks(emptyList(), lane))
    }

    @Test
    @Order(2)
    fun `export writes the lane's keys to the file with progress`() {
        laneDb()
        for (i in 1..3) redis.cmd("SET", "jbd:k$i", "v$i")
        val file = File(root, exportFileName(DataTarget(lane), java.time.Instant.now()))
        val events = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
        val r = client.dataExport(dataExportArgs(DataTarget(lane), file.path)) { events.add(it) }.result.get(60, TimeUnit.SECONDS)
        assertTrue(file.isFile && file.length() > 0, "the file is written")
        assertEquals(lane, r.lane)
        assertEquals(file.path, r.file)
        val b = r.bindings.single()
        assertEquals("cache", b.binding)
        assertEquals(3L, b.items, "the claim key is not data: $r")
        assertEquals(emptyList(), r.notes)
        assertTrue(
            Regex("""^Lane: exported lane $lane \(cache: 3 keys; [\d.]+ (bytes|KB), \d+\.\ds\) to ${Regex.escape(file.path)}\.$""")
                .matches(transferText(DataVerb.EXPORTED, r)),
            transferText(DataVerb.EXPORTED, r),
        )
        val end = System.currentTimeMillis() + 5_000
        while (events.none { it.kind == "end" } && System.currentTimeMillis() < end) Thread.sleep(50)
        assertEquals("begin", events.first().kind, "$events")
        assertEquals(true, events.first().cancellable)
        assertEquals("end", events.last().kind, "$events")
        assertTrue(events.first().title!!.isNotEmpty())
        // Only the binding asked for.
        val one = File(root, exportFileName(DataTarget(lane, "cache"), java.time.Instant.now()))
        val r1 = client.dataExport(dataExportArgs(DataTarget(lane, "cache"), one.path)).result.get(60, TimeUnit.SECONDS)
        assertEquals(listOf("cache"), r1.bindings.map { it.binding })
    }

    @Test
    @Order(3)
    fun `import replaces the lane's keys with the file's`() {
        val file = root.listFiles()!!.first { it.name.startsWith("$lane-2") && it.name.endsWith(".lanedata") }
        laneDb()
        redis.cmd("DEL", "jbd:k1")
        redis.cmd("SET", "jbd:k4", "new")
        redis.cmd("SET", "jbd:k2", "changed")
        val events = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
        val r = client.dataImport(dataImportArgs(DataTarget(lane), file.path)) { events.add(it) }.result.get(60, TimeUnit.SECONDS)
        assertEquals(3L, r.bindings.single().items)
        assertTrue(transferText(DataVerb.IMPORTED, r).endsWith(" from ${file.path}."), transferText(DataVerb.IMPORTED, r))
        assertEquals(mapOf("jbd:k1" to "v1", "jbd:k2" to "v2", "jbd:k3" to "v3"), laneKeys())
        redis.cmd("SELECT", "53")
        assertEquals("not the lane's", redis.cmd("GET", "jbd:baseline"), "baseline's database is not touched")
        assertTrue(events.any { it.kind == "begin" }, "$events")
    }

    @Test
    @Order(4)
    fun `bad input is refused with a clear error`() {
        val relative = failure { client.dataExport(dataExportArgs(DataTarget(lane), "relative.lanedata")).result.get(30, TimeUnit.SECONDS) }
        assertContains(relative.message, "relative.lanedata")
        assertContains(relative.message, "absolute")
        val missing = failure {
            client.dataImport(dataImportArgs(DataTarget(lane), File(root, "nope.lanedata").path)).result.get(30, TimeUnit.SECONDS)
        }
        assertContains(missing.message, "nope.lanedata")
        val notABinding = failure {
            client.dataExport(dataExportArgs(DataTarget(lane, "nosuch"), File(root, "x.lanedata").path)).result.get(30, TimeUnit.SECONDS)
        }
        assertContains(notABinding.message, "nosuch")
        assertEquals(mapOf("jbd:k1" to "v1", "jbd:k2" to "v2", "jbd:k3" to "v3"), laneKeys(), "nothing changed")
    }

    @Test
    @Order(5)
    fun `back up, list the backups, restore the newest`() {
        val b = client.dataBackup(dataBackupArgs(lane)).result.get(60, TimeUnit.SECONDS)
        assertTrue(b.file.startsWith(File(root, "home/backups/$lane").path), b.file)
        assertTrue(transferText(DataVerb.BACKED_UP, b).contains(" to ${b.file}."), transferText(DataVerb.BACKED_UP, b))
        val backups = client.dataBackups(DataBackupsArgs(lane)).get(30, TimeUnit.SECONDS)
        val only = backups.single()
        assertEquals(b.file, only.path)
        assertEquals(File(b.file).length(), only.bytes)
        assertEquals(backups, client.dataBackups(DataBackupsArgs(null)).get(30, TimeUnit.SECONDS))
        val pick = backupPicks(backups, lane).single()
        assertEquals(only.name, pick.name)
        assertTrue(Regex("""^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$""").matches(pick.label), pick.label)
        assertTrue(pick.description.endsWith(" · newest"), pick.description)
        backupName = pick.name
        laneDb()
        redis.cmd("DEL", "jbd:k2", "jbd:k3")
        val r = client.dataRestore(dataRestoreArgs(lane, pick.name)).result.get(60, TimeUnit.SECONDS)
        assertEquals(b.file, r.file)
        assertEquals(mapOf("jbd:k1" to "v1", "jbd:k2" to "v2", "jbd:k3" to "v3"), laneKeys())
        val unknown = failure { client.dataRestore(dataRestoreArgs(lane, "20000101T000000Z")).result.get(30, TimeUnit.SECONDS) }
        assertContains(unknown.message, "20000101T000000Z")
    }

    @Test
    @Order(6)
    fun `a cancelled import leaves the lane's data as it was`() {
        val db = laneDb()
        redis.pipeline((1..30_000).map { listOf("SET", "jbd:bulk:$it", "x".repeat(64)) })
        val file = File(root, "bulk.lanedata")
        val exported = client.dataExport(dataExportArgs(DataTarget(lane), file.path)).result.get(120, TimeUnit.SECONDS)
        assertEquals(30_003L, exported.bindings.single().items)
        redis.cmd("SELECT", db.toString())
        redis.cmd("SET", "jbd:k1", "changed")
        // Cancel as the plugin's Cancel does: window/workDoneProgress/cancel once the server began.
        val began = java.util.concurrent.CountDownLatch(1)
        val events = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
        val call = client.dataImport(dataImportArgs(DataTarget(lane), file.path)) { ev ->
            events.add(ev)
            if (ev.kind == "begin") began.countDown()
        }
        assertTrue(began.await(30, TimeUnit.SECONDS), "no begin: $events")
        call.cancelProgress()
        val u = failure { call.result.get(60, TimeUnit.SECONDS) }
        assertTrue(u.cancelled, "answered $u")
        assertEquals("Lane: Import Data cancelled; the lane's data stays as it was.", DataTexts.cancelled(DataVerb.IMPORTED))
        redis.cmd("SELECT", db.toString())
        assertEquals("changed", redis.cmd("GET", "jbd:k1"), "the lane's data stays as it was")
        val other = if (db == 54) 55 else 54
        redis.cmd("SELECT", other.toString())
        assertEquals(0L, redis.cmd("DBSIZE"), "nothing staged is left in database $other")
        // Back to the three keys: the backup restored over the bulk keys.
        client.dataRestore(dataRestoreArgs(lane, assertNotNull(backupName))).result.get(120, TimeUnit.SECONDS)
        assertEquals(mapOf("jbd:k1" to "v1", "jbd:k2" to "v2", "jbd:k3" to "v3"), laneKeys())
    }

    @Test
    @Order(7)
    fun `deleting the lane removes its data`() {
        val db = laneDb()
        client.delete(deleteArgs(lane, force = true)).get(60, TimeUnit.SECONDS)
        assertEquals(emptyList(), client.dataLs(DataLsArgs(null, null)).get(30, TimeUnit.SECONDS))
        redis.cmd("SELECT", db.toString())
        assertEquals(0L, redis.cmd("DBSIZE"), "database $db is released and empty")
    }

    @Test
    @Order(8)
    fun `another developer's lane is replaced only with force`() {
        // Bob deploys into a lane of his own (the daemon's developer is alice).
        run(bin, "deploy", "--lane", otherLane, extra = mapOf("USER" to "bob"))
        val row = client.dataLs(DataLsArgs(otherLane, null)).get(30, TimeUnit.SECONDS).single()
        val file = File(root, "alice.lanedata")
        assertTrue(root.listFiles()!!.any { it.name.startsWith("$lane-2") }, "the export of alice's lane")
        root.listFiles()!!.first { it.name.startsWith("$lane-2") && it.name.endsWith(".lanedata") }.copyTo(file)
        val refused = failure { client.dataImport(dataImportArgs(DataTarget(otherLane), file.path)).result.get(60, TimeUnit.SECONDS) }
        assertTrue(dataMayForce(refused), "$refused")
        assertContains(refused.message, "bob")
        assertTrue(DataTexts.replaceAnyway(refused.message).endsWith(" Replace anyway?"))
        redis.cmd("SELECT", row.target)
        assertEquals(null, redis.cmd("GET", "jbd:k1"), "nothing imported without force")
        val forced = client.dataImport(dataImportArgs(DataTarget(otherLane), file.path, force = true)).result.get(60, TimeUnit.SECONDS)
        assertEquals(otherLane, forced.lane)
        assertEquals(3L, forced.bindings.single().items, "$forced")
        redis.cmd("SELECT", row.target)
        assertEquals("v1", redis.cmd("GET", "jbd:k1"))
        client.delete(deleteArgs(otherLane, force = true)).get(60, TimeUnit.SECONDS)
        for (db in listOf(54, 55)) {
            redis.cmd("SELECT", db.toString())
            assertEquals(0L, redis.cmd("DBSIZE"), "database $db is released and empty")
        }
    }
}
