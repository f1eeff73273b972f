package dev.lane.core

import com.google.gson.Gson
import com.google.gson.JsonParser
import org.eclipse.lsp4j.jsonrpc.ResponseErrorException
import org.eclipse.lsp4j.jsonrpc.messages.ResponseError
import org.junit.jupiter.api.Test
import java.util.concurrent.CancellationException
import java.util.concurrent.CompletionException
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertIs
import kotlin.test.assertNull
import kotlin.test.assertTrue

class MiscTest {
    @Test
    fun `lane errors become user errors with code and help`() {
        val data = JsonParser.parseString("""{"code":"not_owner","message":"lane x is bob's","help":"pass force"}""")
        val e = ResponseErrorException(ResponseError(ErrorCodes.LANE_ERROR, "lane x is bob's", data))
        val u = toUserError(CompletionException(e))
        assertEquals(UserError(false, "not_owner", "lane x is bob's", "pass force", ErrorCodes.LANE_ERROR), u)
        assertEquals("Lane: Deploy failed: lane x is bob's. Pass force.", errorText("Deploy", u))
        assertTrue(deployMayForce(u))
        assertTrue(deleteMayForce(u.copy(code = "conflict")))
        assertFalse(deleteMayForce(u.copy(code = "not_found")))

        assertTrue(toUserError(ResponseErrorException(ResponseError(ErrorCodes.REQUEST_CANCELLED, "cancelled", null))).cancelled)
        assertTrue(toUserError(CancellationException()).cancelled)
        val cancelled = JsonParser.parseString("""{"code":"cancelled","message":"cancelled","help":null}""")
        assertTrue(toUserError(ResponseErrorException(ResponseError(ErrorCodes.LANE_ERROR, "x", cancelled))).cancelled)
        val plain = toUserError(ResponseErrorException(ResponseError(ErrorCodes.INVALID_PARAMS, "unknown field `lan`", null)))
        assertEquals(UserError(false, null, "unknown field `lan`", null, ErrorCodes.INVALID_PARAMS), plain)
        assertEquals("Lane: Create Lane failed: boom.", errorText("Create Lane", toUserError(IllegalStateException("boom"))))
        // `data` as plain maps (another JSON reader) works too.
        assertEquals("x", errorInfoOf(mapOf("code" to "x", "message" to "m", "help" to null))?.code)
        assertNull(errorInfoOf("just a string"))
    }

    @Test
    fun `lane id and duration hints`() {
        assertEquals("Enter a lane id.", laneIdProblem(""))
        assertEquals("At most 40 characters.", laneIdProblem("a".repeat(41)))
        val chars = "Only lowercase letters, digits and hyphens (-), starting and ending with a letter or digit."
        assertEquals(chars, laneIdProblem("Feature"))
        assertEquals(chars, laneIdProblem("-x"))
        assertEquals("The name \"baseline\" is reserved: it means no lane.", laneIdProblem("baseline"))
        assertNull(laneIdProblem("feature-x"))
        assertNull(laneIdProblem("a".repeat(40)))
        assertNull(durationProblem("30m"))
        assertNull(durationProblem(" 2 h "))
        assertEquals("A duration like 30m, 2h or 3d", durationProblem("2 hours"))
    }

    @Test
    fun `lane picks - active first, baseline and new last`() {
        val s = sampleStatus()
        val picks = lanePicks(s.lanes, PickOptions(activeLane = "feature-x", includeBaseline = true, includeNew = true))
        assertEquals(listOf("feature-x", "team", "baseline", NEW_LANE_LABEL), picks.map { it.label })
        assertEquals("active · 2/3 healthy · expires in 5h 12m", picks[0].description)
        assertEquals("demo.b feat/login@01234567, demo.c fix@89abcdef", picks[0].detail)
        assertEquals("empty · expired", picks[1].description)
        assertEquals("owner ann", picks[1].detail)
        assertEquals("no lane header", picks[2].description)
        assertTrue(picks[3].isNew)
        assertNull(picks[3].lane)
        val fromBaseline = lanePicks(s.lanes, PickOptions(activeLane = BASELINE, includeBaseline = true))
        assertEquals(listOf("feature-x", "team", "baseline"), fromBaseline.map { it.label })
        assertEquals("active · no lane header", fromBaseline[2].description)
    }

    @Test
    fun `server lookup - env, then setting, then PATH, then the install directories`() {
        val exe = setOf("/opt/lane", "/home/me/bin/lane", "/usr/bin/lane")
        val l = Lookup(pathVar = "/nope:/usr/bin", home = "/home/me", isExecutable = { it in exe })
        assertEquals(LocateResult.Found(Located("/usr/bin/lane", Source.PATH)), locateServer(l))
        assertEquals(LocateResult.Found(Located("/home/me/bin/lane", Source.SETTING)), locateServer(l.copy(setting = "~/bin/lane")))
        assertEquals(LocateResult.Found(Located("/opt/lane", Source.ENV)), locateServer(l.copy(env = "/opt/lane", setting = "~/bin/lane")))
        // A wrong explicit choice is an error, not a fall-through to PATH.
        assertEquals(LocateResult.NotFound(listOf("server path setting=/bad")), locateServer(l.copy(setting = "/bad")))
        assertEquals(
            LocateResult.NotFound(listOf("PATH", "/home/me/.cargo/bin", "/home/me/.local/bin", "/usr/local/bin")),
            locateServer(l.copy(pathVar = "/nope")),
        )
        // An IDE started from a desktop launcher may lack the login shell's PATH: cargo install's directory.
        val cargo = l.copy(pathVar = "/nope", isExecutable = { it == "/home/me/.cargo/bin/lane" })
        assertEquals(LocateResult.Found(Located("/home/me/.cargo/bin/lane", Source.INSTALL_DIR)), locateServer(cargo))
        val custom = l.copy(pathVar = "/usr/local/bin", cargoHome = "~/cargo", isExecutable = { false })
        assertEquals(
            LocateResult.NotFound(listOf("PATH", "/home/me/cargo/bin", "/home/me/.cargo/bin", "/home/me/.local/bin")),
            locateServer(custom),
            "CARGO_HOME first; a directory already on PATH is not looked in twice",
        )
        assertEquals(
            "Lane: server not found: no lane binary (looked in PATH, /usr/local/bin). Install it with " +
                "\"cargo install --path server/cli\" in the lane repository, or set Settings → Tools → Lane → Path to lane to the binary.",
            serverNotFoundText(listOf("PATH", "/usr/local/bin")),
        )
    }

    @Test
    fun `settings - header override and validation, trace levels`() {
        val s = sampleStatus()
        assertEquals("x-lane", LaneSettings().headerFor(s))
        assertEquals("x-swimlane", LaneSettings(laneHeader = " x-swimlane ").headerFor(s))
        assertNull(LaneSettings(laneHeader = "x-swimlane").laneHeaderProblem())
        assertEquals("Not an HTTP header name: x lane", LaneSettings(laneHeader = "x lane").laneHeaderProblem())
        assertEquals(TraceLevel.VERBOSE, TraceLevel.parse("verbose"))
        assertEquals(TraceLevel.OFF, TraceLevel.parse("nonsense"))
    }

    @Test
    fun `command params - one argument object, or none`() {
        val gson = Gson()
        val deploy = commandParams(Commands.deployCurrentBranch, deployArgs(sampleStatus().workspaces[0], "feature-x"), "tok-1")
        assertEquals("lane.deployCurrentBranch", deploy.command)
        assertEquals(
            """[{"folder":"/src/b","lane":"feature-x","force":false}]""",
            gson.toJson(deploy.arguments),
            "null fields are left out; the server takes them as null",
        )
        assertEquals("tok-1", deploy.workDoneToken.left)
        assertEquals(emptyList(), commandParams(Commands.list, NoArgs()).arguments)
        assertEquals(emptyList(), commandParams(Commands.status, null).arguments)
        assertEquals(CreateArgs("x", null, "2h"), createArgs(" x ", null, "2h "))
        assertEquals(ExtendArgs("x", "3d", false), extendArgs("x", " 3d"))
        assertEquals(listOf("demo.b", "demo.c", "demo.c"), movableVersions(sampleStatus().lanes).map { it.service })
        assertEquals("fix@89abcdef in feature-x", movableVersions(sampleStatus().lanes)[1].description)
        assertEquals(listOf("/src/b"), deployableWorkspaces(sampleStatus()).map { it.folder })
        assertEquals(emptyList(), deployableWorkspaces(null))
    }

    @Test
    fun `command results convert from what LSP4J hands over`() {
        val tree = JsonParser.parseString("""[{"id":"a","parent":null,"owner":"o","createdAt":1,"expiresAt":2,"expiresInSecs":1,"chain":["a"],"services":[]}]""")
        val lanes: List<LaneInfo> = convertResult(tree, resultType(Commands.list))
        assertEquals("a", lanes[0].id)
        assertIs<LaneInfo>(lanes[0])
        val asMaps = Gson().fromJson(tree, Any::class.java)
        val again: List<LaneInfo> = convertResult(asMaps, resultType(Commands.list))
        assertEquals(lanes, again)
        assertEquals("SwitchResult", Commands.switchTraffic.resultType)
        assertEquals("LaneInfo[]", Commands.list.resultType)
    }

    @Test
    fun `actions and texts`() {
        assertEquals(
            listOf("Show Status", "Deploy Current Branch", "Switch Traffic", "Create Lane", "Delete Lane", "Extend Lane",
                "Move Version To Another Lane…", "Export Data…", "Import Data…", "Back Up Data", "Restore Data…",
                "Copy Request With Lane Header", "Start Proxy", "Stop Proxy", "Refresh",
                "Restart Server", "Show Server Logs", "Set Server Path"),
            LaneActions.MENU.map { it.title },
        )
        assertEquals(
            listOf("Switch Traffic To This Lane", "Deploy Current Branch Here", "Copy Request", "Show Logs"),
            LaneActions.TREE.map { it.title },
        )
        val r = DeployResult("demo.b", "feature-x", "main", "0123456789abcdef", "healthy", "127.0.0.1:1", null, null, "127.0.0.1:4080", "x-lane")
        assertEquals("Lane: deployed demo.b (main@01234567) into feature-x: healthy.", Texts.deployed(r))
        assertEquals(listOf(Texts.SWITCH_TRAFFIC_TO_IT, Texts.COPY_REQUEST), Texts.afterDeploy(r, BASELINE))
        assertEquals(listOf(Texts.COPY_REQUEST), Texts.afterDeploy(r, "feature-x"))
        assertEquals("Lane id: lowercase letters, digits and -, 1–40 characters", Texts.LANE_ID_PROMPT)
        assertEquals("Lane: no workspace folder has a valid lane.toml to deploy.", Texts.NOTHING_TO_DEPLOY)
        assertEquals("lane is bob's. Deploy anyway?", Texts.deployAnyway("lane is bob's."))
        assertEquals("lane \"x\" is bob's. Delete anyway?", Texts.deleteAnyway("lane `x` is bob's."))
    }

    @Test
    fun `progress events and initialize params`() {
        val begin = org.eclipse.lsp4j.WorkDoneProgressBegin().apply {
            title = "Deploying demo.b (main@01234567) into lane f"
            cancellable = true
            percentage = 0
        }
        val ev = ProgressEvent.of(org.eclipse.lsp4j.ProgressParams(org.eclipse.lsp4j.jsonrpc.messages.Either.forLeft("t-1"),
            org.eclipse.lsp4j.jsonrpc.messages.Either.forLeft(begin)))
        assertEquals(ProgressEvent("t-1", "begin", begin.title, null, 0, true), ev)
        val report = org.eclipse.lsp4j.WorkDoneProgressReport().apply { message = "build: running"; percentage = 0 }
        val byNumber = ProgressEvent.of(org.eclipse.lsp4j.ProgressParams(org.eclipse.lsp4j.jsonrpc.messages.Either.forRight(7),
            org.eclipse.lsp4j.jsonrpc.messages.Either.forLeft(report)))
        assertEquals(ProgressEvent("7", "report", null, "build: running", 0, null), byNumber)
        assertNull(ProgressEvent.of(org.eclipse.lsp4j.ProgressParams(org.eclipse.lsp4j.jsonrpc.messages.Either.forLeft("x"),
            org.eclipse.lsp4j.jsonrpc.messages.Either.forRight(mapOf("other" to 1)))))

        val p = initializeParams(listOf(java.io.File("/src/b")), TraceLevel.MESSAGES)
        assertEquals("messages", p.trace)
        assertEquals(mapOf("client" to "jetbrains", "showErrors" to false), p.initializationOptions, "one popup per failure: the plugin's")
        assertEquals(true, p.capabilities.window.workDoneProgress)
        assertEquals(listOf("file:/src/b"), p.workspaceFolders.map { it.uri })
        assertTrue(newDeployToken() != newDeployToken(), "every deploy its own token")
    }
}
