// "Show Status" in the Output panel (issue 14, item 9): plain text, no markdown.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { statusPlainText } from "../../src/summary";
import { sampleStatus } from "../fixtures/status";

describe("statusPlainText", () => {
    const text = statusPlainText(sampleStatus());
    it("has no markdown: no **, no table rules, no escapes, no backticks", () => {
        assert.doesNotMatch(text, /\*\*|\| ---|\\|`/);
    });
    it("says service, branch, lane and chain, and aligns the instances in columns", () => {
        const lines = text.split("\n");
        assert.equal(lines[0], "Service demo.b on branch feat/login (01234567)");
        assert.match(text, /^Your requests enter lane feature-x → team → baseline$/m);
        const header = lines.findIndex((l) => l.startsWith("service"));
        assert.ok(header > 0, text);
        const col = lines[header].indexOf("version");
        for (const row of lines.slice(header + 1, header + 3)) assert.equal(row.charAt(col - 1), " ", row);
        assert.match(text, /^2\/3 healthy, \d+ req\/min$/m);
    });
    it("an unreachable backend: why, and what to do", () => {
        const t = statusPlainText({ ...sampleStatus(), backendError: { code: "unavailable", message: "agent down", help: "run lane up" } });
        assert.equal(t, "lane is unavailable (unavailable): agent down\nrun lane up");
    });
});
