package dev.lane.core

import org.junit.jupiter.api.Test
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertTrue

class SummaryTest {
    private val s = sampleStatus()

    @Test
    fun `the fixture reads like the wire`() {
        assertEquals("feature-x", s.activeLane)
        assertEquals(null, s.backendError)
        assertEquals(listOf("feature-x", "team"), s.lanes[1].chain)
        assertEquals(12L, s.lanes[1].services[0].requestsPerMinute)
    }

    @Test
    fun `status bar text`() {
        assertEquals("Lane…", statusBarText(null))
        assertEquals("Lane: feature-x · feat/login · 2/3 healthy", statusBarText(s))
        assertEquals("Lane: feature-x · feat/login · 3/3 healthy", statusBarText(s.copy(healthy = 3, total = 3)))
        assertEquals("Lane: baseline · feat/login", statusBarText(s.copy(activeLane = BASELINE, healthy = 0, total = 0)))
        assertEquals("Lane: feature-x · 2/3 healthy", statusBarText(s.copy(workspaces = emptyList())))
        assertEquals(
            "Lane: feature-x · 2/3 healthy",
            statusBarText(s.copy(workspaces = listOf(s.workspaces[0].copy(branch = null)))),
        )
        assertEquals(
            "lane: unavailable",
            statusBarText(s.copy(backendError = ErrorInfo("unavailable", "agent down", null))),
        )
    }

    @Test
    fun `the given folder's branch, the innermost service folder in a monorepo`() {
        val two = s.copy(workspaces = s.workspaces + s.workspaces[0].copy(folder = "/src/c", branch = "other"))
        assertEquals("Lane: feature-x · other · 2/3 healthy", statusBarText(two, "/src/c"))
        assertEquals("Lane: feature-x · feat/login · 2/3 healthy", statusBarText(two, "/nowhere"))
        val w = s.workspaces[0]
        val mono = s.copy(
            workspaces = listOf(
                w.copy(folder = "/mono/services/b", service = "demo.b", branch = "main"),
                w.copy(folder = "/mono/services/b2", service = "demo.b2", branch = "main"),
                w.copy(folder = "/mono/services/c", service = "demo.c", branch = "main"),
            ),
        )
        assertEquals("demo.c", pickWorkspace(mono, "/mono/services/c/src/main.go")?.service)
        assertEquals("demo.b2", pickWorkspace(mono, "/mono/services/b2/x.go")?.service, "not a mere string prefix")
        assertEquals("demo.b", pickWorkspace(mono, "/mono/services/b")?.service)
        assertEquals("demo.b", pickWorkspace(mono, "/mono/README.md")?.service)
        assertEquals("demo.b", pickWorkspace(mono, null)?.service)
        val rooted = mono.copy(workspaces = mono.workspaces + w.copy(folder = "/mono", service = "demo.root"))
        assertEquals("demo.c", pickWorkspace(rooted, "/mono/services/c/a.go")?.service, "the innermost wins")
        assertEquals("demo.root", pickWorkspace(rooted, "/mono/README.md")?.service)
    }

    @Test
    fun `warns on unhealthy instances and backend errors only`() {
        assertFalse(statusBarWarns(null))
        assertTrue(statusBarWarns(s))
        assertFalse(statusBarWarns(s.copy(healthy = 3, total = 3)))
        assertTrue(statusBarWarns(s.copy(healthy = 0, total = 0, backendError = ErrorInfo("x", "y", null))))
    }

    @Test
    fun `tooltip shows service, chain, owner, expiry and traffic per service`() {
        val t = statusBarTooltip(s)
        assertContains(t, "Service `demo.b` on `feat/login` (01234567)")
        assertContains(t, "lane **feature-x** → team → baseline")
        assertContains(t, "Owner bob, expires in 5h 12m")
        assertContains(t, "| demo.b | feat/login@01234567 | healthy | 12 |")
        assertContains(t, "| demo.c | fix@89abcdef | starting | 0 |")
        assertContains(t, "2/3 healthy, 15 req/min")
        assertContains(t, "2 lane(s) · router 127.0.0.1:4080 · backend local")
        assertTrue(t.endsWith("Click to switch traffic."))
        assertContains(statusBarTooltip(s.copy(activeLane = BASELINE)), "enter **baseline**")
        assertContains(statusBarTooltip(s.copy(activeLane = "gone")), "does not exist")
        val e = statusBarTooltip(s.copy(backendError = ErrorInfo("unavailable", "no agent", "run lane status")))
        assertEquals("**lane is unavailable** (unavailable): no agent\n\nrun lane status", e)
        assertEquals("Waiting for `lane lsp`…", statusBarTooltip(null))
    }

    @Test
    fun `tooltip html escapes and renders the table`() {
        val h = statusBarTooltipHtml(s)
        assertTrue(h.startsWith("<html><p>Service <code>demo.b</code> on <code>feat/login</code> (01234567)</p>"), h)
        assertContains(h, "<p>Your requests enter lane <b>feature-x</b> → team → baseline</p>")
        assertContains(h, "<tr><td>demo.b</td><td>feat/login@01234567</td><td>healthy</td><td>12</td></tr>")
        assertContains(h, "<th align=\"left\">service</th>")
        val hostile = s.copy(backendError = ErrorInfo("unavailable", "<script>a|b</script>", null))
        assertEquals(
            "<html><p><b>lane is unavailable</b> (unavailable): &lt;script&gt;a|b&lt;/script&gt;</p></html>",
            statusBarTooltipHtml(hostile),
        )
    }

    @Test
    fun `durations and expiry`() {
        val cases = listOf(0L to "0s", -5L to "0s", 45L to "45s", 60L to "1m", 3600L to "1h",
            (5 * 3600 + 12 * 60 + 7L) to "5h 12m", (3 * 86400 + 4 * 3600 + 59L) to "3d 4h", (86400 + 30L) to "1d")
        for ((secs, want) in cases) assertEquals(want, formatDuration(secs), "$secs s")
        assertEquals("expired", expiryText(s.lanes[0]))
        assertEquals("expires in 5h 12m", expiryText(s.lanes[1]))
    }

    @Test
    fun `markdown escapes`() {
        assertEquals("a\\_b \\(c\\) \\`d\\`", escapeMd("a_b (c) `d`"))
    }
}
