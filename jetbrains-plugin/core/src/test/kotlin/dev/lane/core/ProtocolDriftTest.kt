// The names and shapes in Protocol.kt against what the server says it speaks (`lane lsp
// --describe`), both ways: a name on one side only fails, and so does a field whose type or
// nullability differs.

package dev.lane.core

import com.google.gson.JsonObject
import com.google.gson.JsonParser
import org.junit.jupiter.api.Test
import java.util.concurrent.TimeUnit
import kotlin.reflect.KClass
import kotlin.reflect.KType
import kotlin.reflect.full.primaryConstructor
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertTrue

class ProtocolDriftTest {
    private val d: JsonObject = run {
        val p = ProcessBuilder(laneBin(), "lsp", "--describe").redirectErrorStream(false).start()
        val out = p.inputStream.bufferedReader().readText()
        assertTrue(p.waitFor(20, TimeUnit.SECONDS), "lane lsp --describe did not exit")
        assertEquals(0, p.exitValue(), "lane lsp --describe failed: ${p.errorStream.bufferedReader().readText()}")
        JsonParser.parseString(out).asJsonObject
    }

    private fun JsonObject.objects(key: String): List<JsonObject> = getAsJsonArray(key).map { it.asJsonObject }

    @Test
    fun `protocol version`() = assertEquals(d.get("protocolVersion").asInt, PROTOCOL_VERSION)

    @Test
    fun requests() {
        assertEquals(
            listOf(
                listOf(Methods.STATUS, "clientToServer", "null", "LaneStatus"),
                listOf(Methods.HISTORY, "clientToServer", "\"HistoryParams\"", "HistoryEntryInfo[]"),
            ),
            d.objects("requests").map {
                listOf(it.get("method").asString, it.get("direction").asString, it.get("params").toString(), it.get("result").asString)
            },
        )
        assertEquals(Methods.REQUESTS.sorted(), d.objects("requests").map { it.get("method").asString }.sorted())
    }

    @Test
    fun notifications() {
        assertEquals(
            listOf(
                listOf(Methods.STATUS_CHANGED, "serverToClient", "LaneStatus"),
                listOf(Methods.AGENT_RESTARTED, "serverToClient", "AgentRestartInfo"),
            ),
            d.objects("notifications").map { listOf(it.get("method").asString, it.get("direction").asString, it.get("params").asString) },
        )
        assertEquals(Methods.NOTIFICATIONS.sorted(), d.objects("notifications").map { it.get("method").asString }.sorted())
    }

    @Test
    fun `commands, with argument and result types and progress`() {
        val theirs = d.objects("commands").map {
            listOf(it.get("command").asString, it.get("arguments").asString, it.get("result").asString, it.get("progress").asBoolean.toString())
        }.sortedBy { it[0] }
        val ours = Commands.ALL.map { listOf(it.name, it.argsType, it.resultType, it.progress.toString()) }.sortedBy { it[0] }
        assertEquals(theirs, ours)
    }

    @Test
    fun `error codes`() {
        val e = d.getAsJsonObject("errors")
        assertEquals(ErrorCodes.LANE_ERROR, e.get("laneError").asInt)
        assertEquals(ErrorCodes.INVALID_PARAMS, e.get("invalidParams").asInt)
        assertEquals(ErrorCodes.REQUEST_CANCELLED, e.get("requestCancelled").asInt)
        assertEquals("ErrorInfo", e.get("data").asString)
    }

    /** A Kotlin property type as `--describe` writes it: `string`, `number`, `boolean`, `T[]`, `T | null`. */
    private fun wireType(t: KType): String {
        val base = when (val c = t.classifier as KClass<*>) {
            String::class -> "string"
            Long::class, Int::class, Double::class -> "number"
            Boolean::class -> "boolean"
            List::class -> wireType(assertNotNull(t.arguments.single().type)) + "[]"
            else -> assertNotNull(c.simpleName)
        }
        return if (t.isMarkedNullable) "$base | null" else base
    }

    @Test
    fun `every type, with exactly its fields, their types and nullability`() {
        val types = d.getAsJsonObject("types")
        assertEquals(types.keySet().sorted(), TYPES.keys.sorted())
        for ((name, cls) in TYPES) {
            val theirs = types.getAsJsonObject(name).entrySet().associate { it.key to it.value.asString }
            val params = cls.kotlin.primaryConstructor?.parameters.orEmpty()
            val ours = params.associate { assertNotNull(it.name) to wireType(it.type) }
            assertEquals(theirs.keys.sorted(), ours.keys.sorted(), "fields of $name")
            for ((field, wire) in theirs) {
                val literals = Regex("\"([^\"]+)\"").findAll(wire).map { it.groupValues[1] }.toList()
                if (literals.isNotEmpty()) {
                    assertEquals(literals, LITERAL_FIELDS["$name.$field"], "the values of $name.$field")
                    val nullable = wire.endsWith("| null")
                    assertEquals(if (nullable) "string | null" else "string", ours[field], "$name.$field holds $wire")
                } else {
                    assertEquals(wire, ours[field], "the type of $name.$field")
                }
            }
        }
    }

    @Test
    fun `every type a command names is one we mirror`() {
        for (c in d.objects("commands")) {
            for (t in listOf(c.get("arguments").asString, c.get("result").asString)) {
                assertTrue(TYPES.containsKey(t.removeSuffix("[]")), "${c.get("command")} uses $t")
            }
        }
    }
}
