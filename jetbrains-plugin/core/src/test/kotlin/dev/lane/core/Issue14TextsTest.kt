// The VS Code extension's issue-14 texts and behaviour, in the plugin's core (the same cases as the
// extension's failure, firstRun, menus, output, proxy and texts unit tests): a failed deploy, the
// deploy picker, Copy Request after a deploy, Switch Traffic, Extend, Delete, Show Logs, the empty
// and the server-less Lanes tree, Show Status as plain text.

package dev.lane.core

import com.google.gson.JsonParser
import org.eclipse.lsp4j.jsonrpc.ResponseErrorException
import org.eclipse.lsp4j.jsonrpc.messages.ResponseError
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

class Issue14TextsTest {
    private val failure = DeployFailure(
        service = "demo.b",
        lane = "feature-x",
        branch = "feat/login",
        commit = "fedcba9876543210",
        error = ErrorInfo("build_failed", "the build `make` failed", null),
        at = 1,
    )

    @Test
    fun `a failed deploy - one sentence each for error and help, no backticks, a button to the output`() {
        val data = JsonParser.parseString(
            """{"code":"build_failed","message":"the build `make` failed (exit status: 2):\n    main.go:3: syntax error",
               "help":"fix the build, or run it by hand in the repository to see everything"}""",
        )
        val u = toUserError(ResponseErrorException(ResponseError(ErrorCodes.LANE_ERROR, "x", data)))
        assertEquals(
            "Lane: Deploy failed: the build \"make\" failed (exit status: 2). Fix the build, or run it by hand in the repository to see everything.",
            errorText("Deploy", u),
        )
        assertEquals("Show Build Output", errorAction(u))
        assertEquals("Show Service Output", errorAction(u.copy(code = "unhealthy")))
        assertEquals("Show Service Output", errorAction(u.copy(code = "start_failed")))
        assertNull(errorAction(u.copy(code = "not_owner")))
    }

    @Test
    fun `a failed deploy stays on its service in the Lanes tree`() {
        val tree = buildTree(sampleStatus().copy(deployFailures = listOf(failure)))
        val b = assertNotNull(tree.first { it.label == "feature-x" }.children.find { it.label == "demo.b" })
        assertEquals(NodeIcon.FAILED, b.icon)
        assertTrue(b.failed)
        assertTrue(b.description!!.startsWith("last deploy failed: build failed (feat/login@fedcba98) · feat/login@01234567 · "), b.description)
        assertEquals("demo.b in feature-x: the deploy of feat/login@fedcba98 failed\nthe build `make` failed", b.tooltip)
        assertEquals(LaneActions.SHOW_SERVICE_LOGS, b.action)
        assertEquals("lane:feature-x/service:demo.b", b.id, "the same id as the running row: expansion is kept")

        // A service that never ran in the lane: its row is the failure alone.
        val c = buildTree(sampleStatus().copy(deployFailures = listOf(failure.copy(service = "demo.z", lane = "team"))))
            .first { it.label == "team" }.children.single()
        assertEquals("demo.z — last deploy failed: build failed (feat/login@fedcba98)", "${c.label} — ${c.description}")

        val gone = buildTree(sampleStatus().copy(deployFailures = listOf(failure.copy(lane = "gone"))))
        assertEquals("demo.b", gone[0].label)
        assertEquals("last deploy failed: build failed (feat/login@fedcba98) · into gone", gone[0].description)
        assertEquals("failed:gone/demo.b", gone[0].id)

        val none = buildTree(sampleStatus()).first { it.label == "feature-x" }.children.first { it.label == "demo.b" }
        assertFalse(none.failed)
        assertEquals(NodeIcon.HEALTHY, none.icon)
    }

    @Test
    fun `Show Status writes a plain-text table, no markdown`() {
        val s = sampleStatus().copy(deployFailures = listOf(failure.copy(lane = "team")))
        assertEquals(
            listOf(
                "Service demo.b on branch feat/login (01234567)",
                "Your requests enter lane feature-x → team → baseline",
                "Owner bob, expires in 5h 12m",
                "",
                "service  version              health    req/min",
                "demo.b   feat/login@01234567  healthy   12",
                "demo.c   fix@89abcdef         healthy   3",
                "demo.c   fix@89abcdef         starting  0",
                "",
                "2/3 healthy, 15 req/min",
                "Last deploy of demo.b into team failed: the build `make` failed",
                "2 lane(s) · router 127.0.0.1:4080 · backend local",
            ).joinToString("\n"),
            statusPlainText(s),
        )
        assertEquals(
            "lane is unavailable (unavailable): agent down\nstart it",
            statusPlainText(sampleStatus().copy(backendError = ErrorInfo("unavailable", "agent down", "start it"))),
        )
    }

    @Test
    fun `the deploy picker proposes a lane named after the branch and says what it deploys`() {
        assertEquals("feature-login", laneNameFromBranch("feature/login"))
        assertEquals("jira-123-fix-the-thing", laneNameFromBranch("JIRA-123_Fix the thing!"))
        assertEquals("a".repeat(40), laneNameFromBranch("a".repeat(50)))
        assertEquals("a".repeat(39), laneNameFromBranch("a".repeat(39) + "/b"), "no trailing hyphen after the cut")
        assertNull(laneNameFromBranch("HEAD"))
        assertNull(laneNameFromBranch("baseline"))
        assertNull(laneNameFromBranch("///"))
        assertNull(laneNameFromBranch(null))

        val ws = sampleStatus().workspaces[0]
        assertEquals("Deploy demo.b from branch feat/login into which lane?", Texts.deployTitle(ws))
        assertEquals("Deploy demo.b from branch feat/login into a new lane", Texts.deployNewTitle(ws))
        assertEquals("Deploy demo.b (not a git branch) into which lane?", Texts.deployTitle(ws.copy(branch = null)))

        val picks = lanePicks(sampleStatus().lanes, PickOptions("feature-x", includeNew = true, suggestNew = suggestedLane(ws)))
        assertEquals(listOf("New lane feat-login", "feature-x", "team", NEW_LANE_LABEL), picks.map { it.label })
        assertEquals("named after branch feat/login", picks[0].description)
        assertEquals("feat-login", picks[0].lane)
        assertTrue(picks[0].isNew)
        // Not proposed when that lane exists.
        val existing = sampleStatus().lanes + sampleStatus().lanes[0].copy(id = "feat-login")
        assertEquals("feat-login", lanePicks(existing, PickOptions("feature-x", suggestNew = suggestedLane(ws)))[1].label)
    }

    @Test
    fun `Copy Request after a deploy targets the lane just deployed, with its header`() {
        val r = DeployResult(
            "demo.b", "feat-login", "feat/login", "0123456789abcdef", "healthy", "127.0.0.1:46010",
            "http://b.demo.localhost:4080/", "b.demo.localhost:4080", "127.0.0.1:4080", "x-lane",
        )
        val c = deployedRequests(r, ServiceProtocol.HTTP)
        assertEquals("curl -sS -i -H 'x-lane: feat-login' http://b.demo.localhost:4080/", c.requests.curl)
        assertEquals(
            "Lane: copied a request to demo.b in lane feat-login (header x-lane: feat-login): curl -sS -i -H 'x-lane: feat-login' http://b.demo.localhost:4080/",
            copiedText(c),
        )
        assertEquals("x-swimlane", deployedRequests(r, null, "x-swimlane").target.header, "the header setting wins")
        assertEquals("x-lane", deployedRequests(r, null, "").target.header)
        val grpc = deployedRequests(r, ServiceProtocol.GRPC)
        assertEquals("grpcurl -plaintext -authority b.demo.localhost -H 'x-lane: feat-login' 127.0.0.1:4080 list", grpc.requests.grpcurl)
        val base = CopiedRequest(Requests("curl -sS -i http://b.demo.localhost:4080/"), RequestTarget("127.0.0.1:4080", "x-lane", BASELINE), "demo.b")
        assertEquals("Lane: copied a request to demo.b on baseline (no lane header): curl -sS -i http://b.demo.localhost:4080/", copiedText(base))
        val e = runCatching { deployedRequests(r.copy(router = null), null) }.exceptionOrNull()
        assertEquals("the router is not running", e?.message)
    }

    @Test
    fun `Switch Traffic says which requests follow, and offers the proxy`() {
        assertEquals(
            "Lane: requests copied from Lane (Copy Request) now enter feature-x. Other requests still reach baseline: " +
                "start the lane proxy and send them with HTTP_PROXY=http://127.0.0.1:4081 to make them follow.",
            switchText("feature-x", proxyRunning = false),
        )
        assertEquals(
            "Lane: requests sent through the lane proxy (HTTP_PROXY=http://127.0.0.1:4081) and requests copied from Lane now " +
                "enter feature-x; requests sent without the proxy still reach baseline.",
            switchText("feature-x", proxyRunning = true),
        )
        assertEquals("Lane: your requests enter baseline again (no lane header).", switchText(BASELINE, false))
        assertEquals(listOf(Texts.START_PROXY, Texts.COPY_REQUEST), Texts.afterSwitch("feature-x", false))
        assertEquals(listOf(Texts.COPY_REQUEST), Texts.afterSwitch("feature-x", true))
        assertEquals(emptyList(), Texts.afterSwitch(BASELINE, false))
        assertEquals(
            "Lane: the lane proxy runs on 127.0.0.1:4081. Requests sent with HTTP_PROXY=http://127.0.0.1:4081 enter the active lane (feature-x) and follow Switch Traffic.",
            proxyStartedText(DEFAULT_PROXY_LISTEN, "feature-x"),
        )
        assertEquals("export HTTP_PROXY=http://127.0.0.1:4081\n", httpProxyExport(DEFAULT_PROXY_LISTEN))
        assertEquals(listOf("/bin/lane", "proxy", "--listen", "127.0.0.1:4081"), proxyCommand("/bin/lane"))
        // The status-bar tooltip's last line says whether plain requests follow.
        val running = statusBarTooltipHtml(sampleStatus(), null, proxyLine(true, DEFAULT_PROXY_LISTEN))
        assertTrue(running.endsWith("<p>Lane proxy: running on 127.0.0.1:4081 (requests sent with HTTP_PROXY follow the active lane)</p></html>"), running)
        assertTrue(
            statusBarTooltipHtml(sampleStatus(), null, proxyLine(false, DEFAULT_PROXY_LISTEN))
                .contains("Lane proxy: not running (only requests copied from Lane carry the lane; run Tools → Lane → Start Proxy)"),
        )
    }

    @Test
    fun `Extend says the expiry as the tree does, with the exact time`() {
        val lane = sampleStatus().lanes[1].copy(expiresInSecs = 72 * 3600 + 30 * 60, expiresAt = 1796293500)
        assertEquals("Lane: extended feature-x by 30m; it now expires in 3d (Thu, 03 Dec 2026 10:25 UTC).", extendedText(lane, "30m"))
        val row = buildTree(sampleStatus().copy(lanes = listOf(lane))).first { it.label == "feature-x" }
        assertTrue(row.description!!.contains("expires in 3d"), row.description)
    }

    @Test
    fun `validation messages show no backticks`() {
        for (id in listOf("", "Bad_Id", "-a", "baseline", "a".repeat(41))) {
            val problem = assertNotNull(laneIdProblem(id), id)
            assertFalse(problem.contains('`'), problem)
        }
        assertFalse(Texts.LANE_ID_PROMPT.contains('`'))
    }

    @Test
    fun `Delete names what stops and the fallback to baseline`() {
        assertEquals(
            "Delete lane feature-x? Its versions of demo.b, demo.c stop. It is the lane your requests enter: they fall back to baseline.",
            deleteConfirmText(sampleStatus(), "feature-x"),
        )
        assertEquals("Delete lane team? It runs no personal version. Lanes stacked on it: feature-x.", deleteConfirmText(sampleStatus(), "team"))
        assertEquals("Delete lane x? It runs no personal version.", deleteConfirmText(null, "x"))
        assertEquals(
            "Lane: deleted feature-x; stopped demo.b, demo.c; your requests fall back to baseline.",
            deletedText(DeleteResult("feature-x", listOf("demo.b", "demo.c"), BASELINE), true),
        )
        assertEquals("Lane: deleted team.", deletedText(DeleteResult("team", emptyList(), "feature-x"), false))
    }

    @Test
    fun `Show Logs opens the service's output file, else says where its deploys are`() {
        val s = sampleStatus()
        assertEquals("/home/bob/.lane/logs/feature-x/demo.b.log", serviceLog(s, "feature-x", "demo.b"))
        assertNull(serviceLog(s, "feature-x", "demo.c"))
        assertNull(serviceLog(s, BASELINE, "demo.a"))
        assertNull(serviceLog(null, "feature-x", "demo.b"))
        assertEquals(
            "Lane: demo.c has no log file here (it does not run as a local process); its deploys are in the server log (Tools → Lane → Show Server Logs).",
            Texts.noLogFile("demo.c"),
        )
        assertEquals("/src/b", workspaceOf(s, "demo.b")?.folder)
        assertNull(workspaceOf(s, "demo.a"))
        assertEquals("Lane: demo.a is not a service of this workspace; open its repository to deploy it.", Texts.notAWorkspaceService("demo.a"))
    }

    @Test
    fun `the empty tree welcomes with the first step, a missing server says where it looked and the fixes`() {
        val empty = sampleStatus().copy(lanes = emptyList(), baseline = emptyList())
        assertEquals(emptyList(), buildTree(empty))
        assertEquals(LaneActions.DEPLOY, WELCOME.single { it.text == "Deploy current branch to a lane" }.action)
        assertEquals(1, buildTree(empty.copy(deployFailures = listOf(failure.copy(lane = "gone")))).size - 1, "a failure is not hidden")

        val missing = assertNotNull(serverNodes(ServerState.MISSING, listOf("PATH", "/home/me/.cargo/bin")))
        assertEquals(
            listOf(
                "Server not found: no lane binary",
                "Looked in PATH, /home/me/.cargo/bin",
                "Set Settings → Tools → Lane → Path to lane…",
                "Install: cargo install --path server/cli",
                "Look again",
            ),
            missing.map { it.label },
        )
        assertEquals(listOf(null, null, LaneActions.OPEN_SETTINGS, null, LaneActions.RESTART_SERVER), missing.map { it.action })
        assertEquals(LaneActions.RESTART_SERVER, serverNodes(ServerState.STOPPED, emptyList())!!.single().action)
        assertNull(serverNodes(ServerState.RUNNING, emptyList()))
        assertNull(serverNodes(ServerState.STARTING, emptyList()))
        assertEquals(
            "Lane: server not found: no lane binary (looked in PATH). Install it with \"cargo install --path server/cli\" in the lane " +
                "repository, or set Settings → Tools → Lane → Path to lane to the binary. Click to set the path.",
            Texts.notFoundTooltip(listOf("PATH")),
        )
    }
}
