// The real `lane lsp` binary driven through the core client over stdio, the way the plugin drives
// it: initialize, `lane/status`, the commands with the pushed `lane/statusChanged`, a deploy of the
// sample service with work-done progress, cancelled deploys ($/cancelRequest and
// window/workDoneProgress/cancel), a switch, a branch switch. Its own temp LANE_HOME, HOME and git
// repo; LANE_PORT_RANGE 26100-26399.

package dev.lane.core

import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.MethodOrderer
import org.junit.jupiter.api.Order
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.TestMethodOrder
import java.io.File
import java.net.Socket
import java.nio.file.Files
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import kotlin.test.fail

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation::class)
class WireTest {
    private val bin = laneBin()
    private val root: File = Files.createTempDirectory("lane-jetbrains-wire-").toFile()
    private val repo = File(root, "repos/b")
    private val env = mapOf(
        "PATH" to (System.getenv("PATH") ?: "/usr/bin:/bin"),
        "LANE_HOME" to File(root, "home").path,
        "LANE_ROUTER_ADDR" to "127.0.0.1:0",
        "LANE_PORT_RANGE" to "26100-26399",
        "HOME" to root.path,
        "XDG_CONFIG_HOME" to File(root, "config").path,
        "GIT_CONFIG_NOSYSTEM" to "1",
        "GIT_AUTHOR_NAME" to "Alice",
        "GIT_AUTHOR_EMAIL" to "alice@example.com",
        "GIT_COMMITTER_NAME" to "Alice",
        "GIT_COMMITTER_EMAIL" to "alice@example.com",
        "NO_COLOR" to "1",
        "RUST_LOG" to "info",
    )
    private lateinit var client: LaneClient
    private val statuses = mutableListOf<LaneStatus>()
    private val logs = java.util.Collections.synchronizedList(mutableListOf<String>())
    private val shown = java.util.Collections.synchronizedList(mutableListOf<String>())
    private var deployed: DeployResult? = null
    private val lock = java.util.concurrent.locks.ReentrantLock()
    private val changed = lock.newCondition()

    private fun manifest(build: String) =
        "app = \"demo\"\nproc = \"b\"\n\n[build]\ncommand = \"$build\"\n\n" +
            "[run]\ncommand = \"'$bin' sample-service --app demo --name b --port {port}\"\n\n" +
            "[health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n"

    private fun run(vararg cmd: String, dir: File = repo) {
        val pb = ProcessBuilder(*cmd).directory(dir).redirectErrorStream(true)
        pb.environment().clear()
        pb.environment().putAll(env)
        val p = pb.start()
        val out = p.inputStream.bufferedReader().readText()
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "${cmd.toList()} did not finish")
        assertEquals(0, p.exitValue(), "${cmd.toList()}: $out")
    }

    private fun stderrTail(): String = client.stderr.toString().takeLast(3000)

    /** The newest pushed status that satisfies [pred], waiting up to [timeoutMs]. */
    private fun waitForStatus(what: String, timeoutMs: Long = 20_000, pred: (LaneStatus) -> Boolean): LaneStatus {
        val deadline = System.currentTimeMillis() + timeoutMs
        lock.lock()
        try {
            while (true) {
                statuses.lastOrNull(pred)?.let { return it }
                val left = deadline - System.currentTimeMillis()
                if (left <= 0) fail("no pushed status with $what; last: ${statuses.lastOrNull()}; server log:\n${stderrTail()}")
                changed.await(left, TimeUnit.MILLISECONDS)
            }
        } finally {
            lock.unlock()
        }
    }

    private fun <T> waitUntil(what: String, timeoutMs: Long, check: () -> T?): T {
        val deadline = System.currentTimeMillis() + timeoutMs
        while (true) {
            check()?.let { return it }
            if (System.currentTimeMillis() > deadline) fail("timed out waiting for $what; server log:\n${stderrTail()}")
            Thread.sleep(50)
        }
    }

    /** Processes whose command line contains [needle]. */
    private fun processesWith(needle: String): Int = File("/proc").listFiles().orEmpty().count { dir ->
        val cmdline = File(dir, "cmdline")
        dir.name.all(Char::isDigit) && runCatching { cmdline.readBytes() }.getOrNull()
            ?.let { String(it).replace('\u0000', ' ').contains(needle) } == true
    }

    @BeforeAll
    fun start() {
        repo.mkdirs()
        File(repo, "lane.toml").writeText(manifest("echo building"))
        run("git", "init", "-q", "-b", "main")
        run("git", "add", ".")
        run("git", "commit", "-q", "-m", "initial")
        client = LaneClient.start(bin, repo, env, inheritEnv = false)
        client.endpoint.onLog { logs.add(it.message) }
        client.endpoint.onShowMessage { shown.add(it.message) }
        client.endpoint.onStatus { s ->
            lock.lock()
            try {
                statuses.add(s)
                changed.signalAll()
            } finally {
                lock.unlock()
            }
        }
    }

    @AfterAll
    fun stop() {
        if (this::client.isInitialized) client.close()
        runCatching { run(bin, "down", dir = root) }
        root.deleteRecursively()
    }

    @Test
    @Order(1)
    fun `initialize announces the protocol version and every command`() {
        val init = client.initialize(listOf(repo)).get(30, TimeUnit.SECONDS)
        assertEquals(PROTOCOL_VERSION, serverProtocolVersion(init))
        assertEquals(Commands.NAMES.sorted(), init.capabilities.executeCommandProvider.commands.sorted())
        client.initialized()
    }

    @Test
    @Order(2)
    fun `lane status - the workspace's service and branch, baseline active`() {
        val s = client.status().get(60, TimeUnit.SECONDS)
        assertEquals(null, s.backendError, stderrTail())
        val ws = s.workspaces.single()
        assertEquals("demo.b", ws.service)
        assertEquals("main", ws.branch)
        assertEquals(ServiceProtocol.HTTP, ws.protocol)
        assertEquals(repo.canonicalPath, File(ws.folder).canonicalPath)
        assertEquals(BASELINE, s.activeLane)
        assertEquals("x-lane", s.laneHeader)
        assertEquals("Lane: baseline · main", statusBarText(s))
        // The same through the command, and the latest status is what the widget shows.
        assertEquals(s.workspaces, client.statusCommand().get(30, TimeUnit.SECONDS).workspaces)
        assertEquals(s.workspaces, client.endpoint.latestStatus?.workspaces)
    }

    @Test
    @Order(3)
    fun `create pushes a status with the lane, a bad id is refused with a reason`() {
        val lane = client.create(createArgs("jb-a", null, "2h")).get(30, TimeUnit.SECONDS)
        assertEquals("jb-a", lane.id)
        assertTrue(lane.expiresInSecs in 7001..7200, "expiresInSecs ${lane.expiresInSecs}")
        waitForStatus("lane jb-a") { s -> s.lanes.any { it.id == "jb-a" } }

        val e = assertFailsWithCause { client.create(createArgs("Not_Valid", null, "2h")).get(30, TimeUnit.SECONDS) }
        val u = toUserError(e)
        assertTrue(!u.cancelled && (u.code == "invalid_input" || u.rpcCode == ErrorCodes.INVALID_PARAMS), "$u")
        assertContains(u.message, "Not_Valid")
        assertTrue(u.message.isNotEmpty())
    }

    @Test
    @Order(4)
    fun `switch traffic - the status bar follows the push`() {
        assertEquals("jb-a", client.switchTraffic("jb-a").get(30, TimeUnit.SECONDS).activeLane)
        val s = waitForStatus("activeLane jb-a") { it.activeLane == "jb-a" }
        assertEquals("Lane: jb-a · main", statusBarText(s))
        assertEquals(listOf("jb-a"), client.list().get(30, TimeUnit.SECONDS).map { it.id })
    }

    @Test
    @Order(5)
    fun `deploy reports progress stage by stage, then the lane is healthy`() {
        val events = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
        val ws = client.endpoint.latestStatus!!.workspaces.single()
        val call = client.deploy(deployArgs(ws, "jb-a")) { events.add(it) }
        val r = call.result.get(120, TimeUnit.SECONDS)
        assertEquals("demo.b", r.service)
        assertEquals("jb-a", r.lane)
        assertEquals("main", r.branch)
        assertEquals(InstanceState.HEALTHY, r.state)
        // What Copy Request after the deploy needs: the router, the host and the lane header.
        assertEquals("x-lane", r.laneHeader)
        assertEquals(client.endpoint.latestStatus!!.router ?: r.router, r.router)
        assertNotNull(r.router, "the deploy names its router")
        assertEquals("b.demo.localhost:${r.router!!.substringAfterLast(':')}", r.host)
        deployed = r
        assertEquals("Lane: deployed demo.b (main@${r.commit.take(8)}) into jb-a: healthy.", Texts.deployed(r))
        waitUntil("progress end", 5_000) { events.lastOrNull()?.takeIf { it.kind == "end" } }
        val begin = events.first()
        assertEquals("begin", begin.kind, "$events")
        assertEquals(true, begin.cancellable)
        assertEquals("Deploying demo.b (main@${r.commit.take(8)}) into lane jb-a", begin.title)
        for (stage in listOf("build", "start", "health", "register", "route")) {
            assertTrue(events.any { it.kind == "report" && it.message?.startsWith(stage) == true }, "no $stage report in $events")
        }
        val percents = events.mapNotNull { it.percentage }
        assertEquals(percents.sorted(), percents, "percentages only grow")
        assertEquals("demo.b main@${r.commit.take(8)} is healthy in lane jb-a", events.last().message)
        // The stages and the outcome are logged too (the plugin's server log), even with progress.
        waitUntil("the outcome in window/logMessage", 5_000) { logs.firstOrNull { it.contains("is healthy in lane jb-a") } }
        assertTrue(logs.any { it.contains("[demo.b]") }, "build and service lines: $logs")

        val s = waitForStatus("jb-a 1/1 healthy") { it.activeLane == "jb-a" && it.healthy == 1L && it.total == 1L }
        assertEquals("Lane: jb-a · main · 1/1 healthy", statusBarText(s))
        // Show Logs opens the service's output file, which the status names (ServiceInfo.log).
        val log = File(assertNotNull(serviceLog(s, "jb-a", "demo.b"), "ServiceInfo.log of a local service"))
        waitUntil("output in ${log.path}", 10_000) { log.takeIf { it.isFile && it.length() > 0 } }
        val tree = buildTree(s)
        assertEquals("jb-a", tree[0].label)
        assertEquals("demo.b", tree[0].children[0].label)
        assertTrue(Regex("""^main@\w+ · 1/1 healthy · \d+ req/min$""").matches(tree[0].children[0].description!!), tree[0].children[0].description)
    }

    @Test
    @Order(6)
    fun `the copied request reaches the lane's version through the router`() {
        val s = client.endpoint.latestStatus!!
        val router = assertNotNull(s.router, "the router runs")
        val requests = buildRequests(s.workspaces.single(), RequestTarget(router, LaneSettings().headerFor(s), s.activeLane))
        assertContains(requests.curl, "-H 'x-lane: jb-a'")
        // What that curl sends, over a plain socket (no resolver needed for *.localhost).
        val url = requests.curl.substringAfterLast(' ')
        val host = url.removePrefix("http://").substringBefore('/')
        val (rHost, rPort) = router.substringBeforeLast(':') to router.substringAfterLast(':').toInt()
        val response = Socket(rHost, rPort).use { sock ->
            sock.soTimeout = 10_000
            sock.getOutputStream().write("GET / HTTP/1.1\r\nHost: $host\r\nx-lane: jb-a\r\nConnection: close\r\n\r\n".toByteArray())
            sock.getInputStream().readBytes().decodeToString()
        }
        assertTrue(response.startsWith("HTTP/1.1 200"), response)
        assertContains(response, "jb-a")
    }

    @Test
    @Order(6)
    fun `Copy Request after the deploy reaches the deployed version with traffic on baseline`() {
        val r = assertNotNull(deployed)
        assertEquals(BASELINE, client.switchTraffic(BASELINE).get(30, TimeUnit.SECONDS).activeLane)
        waitForStatus("activeLane baseline") { it.activeLane == BASELINE }
        val c = deployedRequests(r, ServiceProtocol.HTTP, LaneSettings().laneHeader)
        assertEquals("Lane: copied a request to demo.b in lane jb-a (header x-lane: jb-a): ${c.requests.curl}", copiedText(c))
        val url = c.requests.curl.substringAfterLast(' ')
        val host = url.removePrefix("http://").substringBefore('/')
        val router = r.router!!
        val response = Socket(router.substringBeforeLast(':'), router.substringAfterLast(':').toInt()).use { sock ->
            sock.soTimeout = 10_000
            sock.getOutputStream().write("GET / HTTP/1.1\r\nHost: $host\r\nx-lane: jb-a\r\nConnection: close\r\n\r\n".toByteArray())
            sock.getInputStream().readBytes().decodeToString()
        }
        assertTrue(response.startsWith("HTTP/1.1 200"), response)
        assertContains(response, "jb-a")
        assertEquals("jb-a", client.switchTraffic("jb-a").get(30, TimeUnit.SECONDS).activeLane)
        waitForStatus("activeLane jb-a again") { it.activeLane == "jb-a" }
    }

    @Test
    @Order(6)
    fun `Start Proxy runs lane proxy until Stop Proxy`() {
        val port = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
        val lines = java.util.Collections.synchronizedList(mutableListOf<String>())
        var changes = 0
        val proxy = LaneProxy(bin, env, repo, "127.0.0.1:$port", { lines.add(it) }, { changes++ })
        try {
            proxy.start().get(30, TimeUnit.SECONDS)
            assertTrue(proxy.running)
            assertTrue(lines.first().startsWith("lane proxy on http://127.0.0.1:$port"), "$lines")
            proxy.start().get(1, TimeUnit.SECONDS)
            assertEquals(1, processesWith("proxy --listen 127.0.0.1:$port"), "a second start starts nothing")
        } finally {
            proxy.stop()
        }
        waitUntil("the proxy gone", 10_000) { (!proxy.running && processesWith("proxy --listen 127.0.0.1:$port") == 0).takeIf { it } }
        assertEquals(2, changes, "started, stopped")
        // A port taken: the start fails with what lane proxy said.
        java.net.ServerSocket(port, 1, java.net.InetAddress.getLoopbackAddress()).use {
            val e = assertFailsWithCause { LaneProxy(bin, env, repo, "127.0.0.1:$port").start().get(30, TimeUnit.SECONDS) }
            assertContains(e.message ?: "", "cannot listen on 127.0.0.1:$port")
        }
    }

    /** A slow deploy into [lane], cancelled by [cancel] once its build runs: nothing stays behind. */
    private fun cancelledDeploy(lane: String, cancel: (CommandCall<DeployResult>) -> Unit) {
        val events = java.util.Collections.synchronizedList(mutableListOf<ProgressEvent>())
        val ws = client.endpoint.latestStatus!!.workspaces.single()
        val call = client.deploy(deployArgs(ws, lane)) { events.add(it) }
        waitUntil("the build stage", 30_000) { events.firstOrNull { it.kind == "report" && it.message?.startsWith("build") == true } }
        waitUntil("the slow build process", 10_000) { processesWith("sleep 29.5").takeIf { it > 0 } }
        val started = System.currentTimeMillis()
        cancel(call)
        val e = assertFailsWithCause { call.result.get(20, TimeUnit.SECONDS) }
        assertTrue(toUserError(e).cancelled, "cancelled, not failed: $e")
        val end = waitUntil("progress end", 20_000) { events.firstOrNull { it.kind == "end" } }
        assertTrue(end.message!!.startsWith("cancelled"), "end: ${end.message}")
        assertTrue(System.currentTimeMillis() - started < 20_000, "cancelled promptly")
        waitForStatus("no lane $lane") { s -> s.lanes.none { it.id == lane } }
        waitUntil("the build gone", 15_000) { (processesWith("sleep 29.5") == 0).takeIf { it } }
    }

    @Test
    @Order(7)
    fun `cancelling a deploy by cancelRequest and by progress cancel rolls it back`() {
        File(repo, "lane.toml").writeText(manifest("sleep 29.5"))
        try {
            cancelledDeploy("jb-slow") { it.cancel() }
            cancelledDeploy("jb-slow-two") { it.cancelProgress() }
        } finally {
            File(repo, "lane.toml").writeText(manifest("echo building"))
        }
    }

    @Test
    @Order(8)
    fun `a failed build - one error for the client, the failure on the service until the next deploy`() {
        File(repo, "lane.toml").writeText(manifest("sh -c 'echo compiling; echo oops >&2; exit 3'"))
        shown.clear()
        try {
            val ws = client.endpoint.latestStatus!!.workspaces.single()
            val e = assertFailsWithCause { client.deploy(deployArgs(ws, "jb-fail")).result.get(120, TimeUnit.SECONDS) }
            val u = toUserError(e)
            assertEquals("build_failed", u.code, "$u")
            assertEquals("Show Build Output", errorAction(u))
            assertTrue(errorText("Deploy", u).startsWith("Lane: Deploy failed: "), errorText("Deploy", u))
            val s = waitForStatus("the failure") { st -> st.deployFailures.any { it.lane == "jb-fail" } }
            val f = s.deployFailures.single { it.lane == "jb-fail" }
            assertEquals("demo.b", f.service)
            assertEquals(ws.branch, f.branch)
            assertEquals("build_failed", f.error.code)
            // The lane the deploy had created is gone again: the failure has its own row.
            assertTrue(s.lanes.none { it.id == "jb-fail" })
            val row = buildTree(s).first { it.id == "failed:jb-fail/demo.b" }
            assertTrue(row.description!!.startsWith("last deploy failed: build failed ("), row.description)
            assertTrue(row.description!!.endsWith(" · into jb-fail"), row.description)
            assertContains(statusPlainText(s), "Last deploy of demo.b into jb-fail failed: ")
            // showErrors false: the client shows the error; the server asks for no popup of its own.
            Thread.sleep(300)
            assertEquals(emptyList(), shown.toList())
        } finally {
            File(repo, "lane.toml").writeText(manifest("echo building"))
        }
    }

    @Test
    @Order(6)
    fun `a lane without data bindings - no Data node, no backups, a backup says why`() {
        // The sample service declares no [data.*]: no lane owns data (DataWireTest has a lane that does).
        assertEquals(emptyList(), client.dataLs(DataLsArgs(null, null)).get(30, TimeUnit.SECONDS))
        assertEquals(emptyList(), client.dataLs(DataLsArgs("jb-a", null)).get(30, TimeUnit.SECONDS))
        val s = client.endpoint.latestStatus!!
        assertEquals(buildTree(s), withDataNodes(buildTree(s), emptyList()))
        assertEquals(emptyList(), client.dataBackups(DataBackupsArgs("jb-a")).get(30, TimeUnit.SECONDS))
        assertEquals(emptyList(), client.dataBackups(DataBackupsArgs(null)).get(30, TimeUnit.SECONDS))
        val backup = toUserError(assertFailsWithCause { client.dataBackup(dataBackupArgs("jb-a")).result.get(30, TimeUnit.SECONDS) })
        assertContains(backup.message, "jb-a", message = "$backup")
        val badLane = toUserError(assertFailsWithCause { client.dataBackups(DataBackupsArgs("Not A Lane")).get(30, TimeUnit.SECONDS) })
        assertContains(badLane.message, "Not A Lane", message = "$badLane")
    }

    @Test
    @Order(9)
    fun `a branch switch is pushed`() {
        run("git", "checkout", "-q", "-b", "other")
        val s = waitForStatus("branch other", 10_000) { it.workspaces.singleOrNull()?.branch == "other" }
        assertEquals("Lane: jb-a · other · 1/1 healthy", statusBarText(s))
    }

    @Test
    @Order(10)
    fun `delete pushes a status without the lane, traffic back on baseline`() {
        val before = client.endpoint.latestStatus!!
        assertEquals(
            "Delete lane jb-a? Its versions of demo.b stop. It is the lane your requests enter: they fall back to baseline.",
            deleteConfirmText(before, "jb-a"),
        )
        val r = client.delete(deleteArgs("jb-a", force = true)).get(60, TimeUnit.SECONDS)
        assertEquals(DeleteResult("jb-a", listOf("demo.b"), BASELINE), r)
        assertEquals("Lane: deleted jb-a; stopped demo.b; your requests fall back to baseline.", deletedText(r, wasActive = true))
        val s = waitForStatus("no lanes") { it.lanes.isEmpty() }
        assertEquals(BASELINE, s.activeLane)
        assertEquals(emptyList(), client.list().get(30, TimeUnit.SECONDS))
        // The lane is gone but its history is kept: it starts with its creation, ends with the
        // delete, and every entry names the owner and why.
        val h = client.history("jb-a").get(30, TimeUnit.SECONDS)
        assertEquals(LaneEvent.CREATE, h.first().event, "$h")
        assertEquals(LaneEvent.DELETE, h.last().event, "$h")
        assertTrue(h.any { it.event == LaneEvent.DEPLOY && it.service == "demo.b" }, "$h")
        assertTrue(h.all { it.lane == "jb-a" && it.owner.isNotEmpty() && it.reason.isNotEmpty() }, "$h")
    }

    @Test
    @Order(11)
    fun `shutdown and exit end the server cleanly`() {
        client.close(10)
        assertEquals(0, client.exitCode(), stderrTail())
    }

    private fun assertFailsWithCause(body: () -> Unit): Throwable {
        try {
            body()
        } catch (e: ExecutionException) {
            return e.cause ?: e
        } catch (e: java.util.concurrent.CancellationException) {
            return e
        }
        fail("expected the call to fail")
    }
}
