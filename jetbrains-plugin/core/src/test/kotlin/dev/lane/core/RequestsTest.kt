package dev.lane.core

import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import kotlin.test.assertEquals

class RequestsTest {
    private fun ws(f: (WorkspaceInfo) -> WorkspaceInfo = { it }) = f(sampleStatus().workspaces[0])

    @Test
    fun `curl and grpcurl with the lane header`() {
        val cases = listOf(
            Triple(ws(), RequestTarget("127.0.0.1:4080", "x-lane", "feature-x"),
                "curl -sS -i -H 'x-lane: feature-x' http://b.demo.localhost:4080/"),
            Triple(ws(), RequestTarget("127.0.0.1:4080", "x-lane", BASELINE),
                "curl -sS -i http://b.demo.localhost:4080/"),
            Triple(ws(), RequestTarget("127.0.0.1:4080", "x-swimlane", "f1"),
                "curl -sS -i -H 'x-swimlane: f1' http://b.demo.localhost:4080/"),
            Triple(ws { it.copy(host = null, url = null, service = "shop.cart") }, RequestTarget("127.0.0.1:41234", "x-lane", "f1"),
                "curl -sS -i -H 'x-lane: f1' http://cart.shop.localhost:41234/"),
            Triple(ws(), RequestTarget("10.1.2.3:4080", "x-lane", "f1"),
                "curl -sS -i -H 'x-lane: f1' --connect-to b.demo.localhost:4080:10.1.2.3:4080 http://b.demo.localhost:4080/"),
        )
        for ((w, target, curl) in cases) {
            val r = buildRequests(w, target)
            assertEquals(curl, r.curl)
            assertEquals(null, r.grpcurl)
        }
        val g = buildRequests(ws { it.copy(protocol = "grpc") }, RequestTarget("127.0.0.1:4080", "x-lane", "feature-x"))
        assertEquals("grpcurl -plaintext -authority b.demo.localhost -H 'x-lane: feature-x' 127.0.0.1:4080 list", g.grpcurl)
    }

    @Test
    fun `a workspace without a service is refused`() {
        val e = assertThrows<IllegalArgumentException> {
            buildRequests(ws { it.copy(service = null, host = null, url = null) }, RequestTarget("127.0.0.1:1", "x-lane", "a"))
        }
        assertEquals("the workspace has no service (no valid lane.toml)", e.message)
    }

    @Test
    fun `clipboard text puts grpcurl first`() {
        assertEquals("c\n", clipboardText(Requests("c")))
        assertEquals("g\nc\n", clipboardText(Requests("c", "g")))
    }

    @Test
    fun `shell quoting`() {
        val cases = listOf("plain" to "plain", "a b" to "'a b'", "it's" to "'it'\\''s'", "x-lane: f1" to "'x-lane: f1'",
            "http://h:1/p?q=1" to "'http://h:1/p?q=1'", "" to "''")
        for ((input, want) in cases) assertEquals(want, shellQuote(input), input)
    }
}
