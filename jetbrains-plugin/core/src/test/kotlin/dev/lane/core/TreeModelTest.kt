package dev.lane.core

import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

class TreeModelTest {
    /** A node as one line: `label — description [kind:icon]`, children indented (as the VS Code test). */
    private fun render(nodes: List<TreeNode>, indent: String = ""): List<String> = nodes.flatMap { n ->
        val desc = n.description?.let { " — $it" } ?: ""
        listOf("$indent${n.label}$desc [${n.kind.name.lowercase()}:${n.icon.codicon}]") + render(n.children, "$indent  ")
    }

    @Test
    fun `lanes, services, instances, then baseline`() {
        assertEquals(
            listOf(
                "feature-x — active · 2/3 healthy · expires in 5h 12m · 15 req/min [lane:debug-stackframe]",
                "  demo.b — feat/login@01234567 · 1/1 healthy · 12 req/min [service:pass-filled]",
                "  demo.c — fix@89abcdef · 1/2 healthy · 3 req/min [service:warning]",
                "    127.0.0.1:46011 — healthy · 3 req/min [instance:pass-filled]",
                "    127.0.0.1:46012 — starting · 0 req/min [instance:loading~spin]",
                "team — expired · 0 req/min [lane:git-merge]",
                "  no personal versions yet [message:info]",
                "baseline — 2/2 healthy · 47 req/min [baseline:home]",
                "  demo.a — baseline · 1/1 healthy · 40 req/min [service:pass-filled]",
                "  demo.b — baseline · 1/1 healthy · 7 req/min [service:pass-filled]",
            ),
            render(buildTree(sampleStatus())),
        )
    }

    @Test
    fun `ids are unique and stable, nodes carry their lane`() {
        val ids = mutableListOf<String>()
        fun walk(ns: List<TreeNode>) {
            for (n in ns) {
                ids.add(n.id)
                assertNotNull(n.lane, "${n.id} has a lane")
                walk(n.children)
            }
        }
        walk(buildTree(sampleStatus()))
        assertEquals(ids.size, ids.toSet().size)
        assertEquals(listOf("lane:feature-x", "lane:team", "lane:baseline"), buildTree(sampleStatus()).map { it.id })
    }

    @Test
    fun `baseline is active when no lane is, expired lanes are dimmed`() {
        val roots = buildTree(sampleStatus().copy(activeLane = BASELINE))
        assertEquals(listOf("feature-x" to false, "team" to false, "baseline" to true), roots.map { it.label to it.active })
        assertTrue(roots[1].dimmed)
        assertTrue(roots[2].expandedByDefault)
    }

    @Test
    fun `a single message before the first status and on backend errors`() {
        assertEquals(listOf("Waiting for lane lsp… [message:info]"), render(buildTree(null)))
        val s = sampleStatus().copy(backendError = ErrorInfo("unavailable", "agent down", null))
        assertEquals(listOf("lane is unavailable: agent down [message:info]"), render(buildTree(s)))
    }

    @Test
    fun `context actions per node kind`() {
        val roots = buildTree(sampleStatus())
        assertEquals(
            listOf(LaneActions.SWITCH_TO, LaneActions.TREE_COPY_REQUEST, LaneActions.DEPLOY_HERE, LaneActions.EXTEND, LaneActions.DELETE),
            nodeActions(roots[0]),
        )
        assertEquals(
            listOf(LaneActions.TREE_COPY_REQUEST, LaneActions.SWITCH_TO, LaneActions.DEPLOY_HERE, LaneActions.SHOW_SERVICE_LOGS, LaneActions.ASSIGN),
            nodeActions(roots[0].children[0]),
        )
        assertEquals(listOf(LaneActions.SWITCH_TO, LaneActions.TREE_COPY_REQUEST), nodeActions(roots[2]))
        assertEquals(
            listOf(LaneActions.TREE_COPY_REQUEST, LaneActions.DEPLOY_HERE, LaneActions.SHOW_SERVICE_LOGS),
            nodeActions(roots[2].children[0]),
            "baseline versions are not moved",
        )
        assertEquals(emptyList(), nodeActions(roots[1].children[0]))
        // Every action a node offers has a title.
        for (id in (roots + roots.flatMap { it.children }).flatMap(::nodeActions).toSet()) LaneActions.spec(id)
    }
}
