package dev.lane.core

import java.io.File

/** `$LANE_BIN`, else `../../target/debug/lane` from this module (the repo's debug build). A missing
 * binary fails the test: build it with `cargo build -p lane` or set LANE_BIN. */
fun laneBin(): String {
    val configured = System.getenv("LANE_BIN")?.takeIf { it.isNotBlank() }
    val bin = File(configured ?: "../../target/debug/lane").absoluteFile.normalize()
    check(bin.canExecute()) { "lane binary $bin not found: build it (cargo build -p lane) or set LANE_BIN" }
    return bin.path
}
