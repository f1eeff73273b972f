// The plugin's plugin.xml (which cannot be built here) against the core: every Tools → Lane entry
// with the core's id and title, in the core's order; the server and widget ids the glue uses.

package dev.lane.core

import org.junit.jupiter.api.Test
import org.w3c.dom.Element
import java.io.File
import javax.xml.parsers.DocumentBuilderFactory
import kotlin.test.assertEquals
import kotlin.test.assertTrue

class PluginXmlTest {
    private val xml = File("../plugin/src/main/resources/META-INF/plugin.xml")
    private val doc = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(xml)

    private fun elements(tag: String): List<Element> =
        doc.getElementsByTagName(tag).let { list -> (0 until list.length).map { list.item(it) as Element } }

    @Test
    fun `Tools - Lane holds the core's actions with their titles`() {
        val group = elements("group").single { it.getAttribute("id") == LaneActions.GROUP }
        assertEquals(LaneActions.GROUP_TITLE, group.getAttribute("text"))
        assertEquals("ToolsMenu", (group.getElementsByTagName("add-to-group").item(0) as Element).getAttribute("group-id"))
        val actions = elements("action").map { Triple(it.getAttribute("id"), it.getAttribute("text"), it.getAttribute("description")) }
        assertEquals(LaneActions.MENU.map { Triple(it.id, it.title, it.description) }, actions)
        for (a in elements("action")) {
            assertTrue(a.getAttribute("class").startsWith("dev.lane.jetbrains."), a.getAttribute("class"))
        }
    }

    @Test
    fun `the server, its mapping and the extensions`() {
        assertEquals("dev.lane.jetbrains.LaneServerFactory", elements("server").single().getAttribute("factoryClass"))
        assertEquals("lane", elements("server").single().getAttribute("id"))
        assertEquals("lane.toml", elements("fileNamePatternMapping").single().getAttribute("patterns"))
        assertEquals(listOf("com.intellij.modules.platform", "com.redhat.devtools.lsp4ij"), elements("depends").map { it.textContent })
        assertEquals(Texts.TOOL_WINDOW, elements("toolWindow").single().getAttribute("id"))
    }
}
