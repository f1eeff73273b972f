// Small inconsistencies (issue 14, item 10): Extend says what the tree says, validation shows no
// markdown, deleting the active lane says traffic falls back to baseline and what stops.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { laneIdProblem } from "../../src/errors";
import { deleteConfirmText, deletedText, extendedText } from "../../src/texts";
import { buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

describe("Extend", () => {
    it("says the expiry as the Lanes view does (3d, not a rounded 72h) and the exact time", () => {
        const lane = { ...sampleStatus().lanes[1], expiresInSecs: 72 * 3600 + 30 * 60, expiresAt: 1796293500 };
        const text = extendedText(lane, "30m");
        assert.equal(text, "Lane: extended feature-x by 30m; it now expires in 3d (Thu, 03 Dec 2026 10:25 UTC).");
        const row = buildTree({ ...sampleStatus(), lanes: [lane] }).find((n) => n.label === "feature-x");
        assert.match(row?.description ?? "", /expires in 3d/);
        assert.doesNotMatch(text, /72h/);
    });
});

describe("validation messages", () => {
    it("show no literal backticks", () => {
        for (const id of ["", "Bad_Id", "-a", "baseline", "a".repeat(41)]) {
            const problem = laneIdProblem(id);
            assert.ok(problem, id);
            assert.doesNotMatch(problem, /`/, problem);
        }
        assert.equal(laneIdProblem("baseline"), 'The name "baseline" is reserved: it means no lane.');
    });
});

describe("Delete", () => {
    it("the active lane: says its services stop and requests fall back to baseline", () => {
        assert.equal(
            deleteConfirmText(sampleStatus(), "feature-x"),
            "Delete lane feature-x? Its versions of demo.b, demo.c stop. It is the lane your requests enter: they fall back to baseline.",
        );
    });
    it("another lane: no word on traffic", () => {
        const t = deleteConfirmText(sampleStatus(), "team");
        assert.match(t, /^Delete lane team\? It runs no personal version\. Lanes stacked on it: feature-x\.$/);
    });
    it("after the delete", () => {
        assert.equal(
            deletedText({ deleted: "feature-x", stopped: ["demo.b", "demo.c"], activeLane: "baseline" }, true),
            "Lane: deleted feature-x; stopped demo.b, demo.c; your requests fall back to baseline.",
        );
        assert.equal(deletedText({ deleted: "team", stopped: [], activeLane: "feature-x" }, false), "Lane: deleted team.");
    });
});
