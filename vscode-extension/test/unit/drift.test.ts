// Baseline drift in the Lanes view and the status-bar tooltip (issue 12: baseline follows production).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { driftParagraph, driftText } from "../../src/drift";
import type { BaselineSyncInfo } from "../../src/lsp_ext";
import { statusBarTooltip } from "../../src/summary";
import { buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

const OLD = "1111111111111111111111111111111111111111";
const NEW = "2222222222222222222222222222222222222222";

function sync(over: Partial<BaselineSyncInfo>): BaselineSyncInfo {
    return {
        service: "demo.b",
        follows: "origin/main",
        production: OLD,
        running: OLD,
        drift: "in_sync",
        reason: null,
        lastSync: 1_700_000_000,
        ...over,
    };
}

describe("baseline drift", () => {
    it("says what runs against what production runs", () => {
        assert.equal(driftText(sync({})), "follows origin/main: in sync at 11111111");
        assert.equal(
            driftText(sync({ drift: "build_failed", production: NEW })),
            "follows origin/main: build failed (runs 11111111, production 22222222)",
        );
    });

    it("marks the baseline service row and keeps the others as they were", () => {
        const failed = sync({ drift: "build_failed", production: NEW, reason: "the build `make` failed (exit 2):\n    boom" });
        const status = { ...sampleStatus(), baselineSync: [failed] };
        const baseline = buildTree(status).find((n) => n.kind === "baseline");
        assert.ok(baseline);
        const b = baseline.children.find((c) => c.service === "demo.b");
        const a = baseline.children.find((c) => c.service === "demo.a");
        assert.ok(b && a);
        assert.match(b.description ?? "", /build failed \(runs 11111111, production 22222222\)/);
        assert.match(b.tooltip ?? "", /boom/);
        assert.equal(b.icon, "warning");
        assert.doesNotMatch(a.description ?? "", /follows/);
    });

    it("the tooltip lists drifting services only", () => {
        assert.equal(driftParagraph({ ...sampleStatus(), baselineSync: [sync({})] }), undefined);
        const status = { ...sampleStatus(), baselineSync: [sync({ drift: "behind", production: NEW })] };
        const tip = statusBarTooltip(status);
        assert.match(tip, /\*\*Baseline drifts from production\*\*/);
        assert.match(tip, /`demo\.b` follows origin\/main: behind/);
    });
});
