import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { historyEntryNodes, historyNode, utcText } from "../../src/historyModel";
import type { HistoryEntryInfo, LaneInfo, LaneStatus } from "../../src/lsp_ext";
import { clockText, mergedLaneOf, mergedLaneText, mergedStatusText, mergedTooltip, mergedWarns } from "../../src/merged";
import { buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

const RECLAIM = 1796293500;

/** The sample status with lane `id` marked merged (kept when `reclaimAt` is null). */
function withMerged(id: string, reclaimAt: number | null, activeLane = "team"): LaneStatus {
    const s = sampleStatus();
    return {
        ...s,
        activeLane,
        lanes: s.lanes.map((l) =>
            l.id === id
                ? { ...l, merged: { since: RECLAIM - 3600, reclaimAt, target: "main", reason: "demo.b: branch feat/login into main (fast-forward or merge commit)" } }
                : l,
        ),
    };
}

describe("the current branch's merged lane in the status bar", () => {
    it("is the lane holding the branch being worked on, or the active lane, when merged", () => {
        assert.equal(mergedLaneOf(sampleStatus()), undefined, "nothing merged");
        // feature-x holds demo.b of feat/login, the workspace's branch, though team is active.
        assert.equal(mergedLaneOf(withMerged("feature-x", RECLAIM))?.id, "feature-x");
        assert.equal(mergedLaneOf(withMerged("team", RECLAIM, "team"))?.id, "team");
        // A merged lane of another branch that is not active: not the developer's.
        assert.equal(mergedLaneOf(withMerged("team", RECLAIM, "feature-x")), undefined);
        const down = { ...withMerged("feature-x", RECLAIM), backendError: { code: "unavailable", message: "x", help: null } };
        assert.equal(mergedLaneOf(down), undefined);
    });

    it("says when it goes, and that Extend Lane keeps it", () => {
        const lane = mergedLaneOf(withMerged("feature-x", RECLAIM)) as LaneInfo;
        assert.equal(mergedStatusText(lane), ` · $(warning) feature-x merged, goes at ${clockText(RECLAIM)}`);
        assert.match(clockText(RECLAIM), /^\d\d:\d\d$/);
        const tip = mergedTooltip(lane, RECLAIM - 59 * 60);
        assert.match(tip, /Lane feature-x is merged\*\* into main/);
        assert.match(tip, /in 59m\) unless you run Extend Lane/);
        assert.ok(mergedWarns(lane));
        assert.equal(mergedLaneText(lane), `merged, goes at ${clockText(RECLAIM)}`);

        const kept = mergedLaneOf(withMerged("feature-x", null)) as LaneInfo;
        assert.match(mergedStatusText(kept), /feature-x merged \(kept\)$/);
        assert.match(mergedTooltip(kept, RECLAIM), /kept by Extend Lane/);
        assert.equal(mergedWarns(kept), false);
        assert.equal(mergedStatusText(undefined), "");
        assert.equal(mergedTooltip(undefined, RECLAIM), "");
    });

    it("shows on the lane's row in the Lanes view", () => {
        const roots = buildTree(withMerged("feature-x", RECLAIM));
        const row = roots.find((n) => n.id === "lane:feature-x");
        assert.match(row?.description ?? "", new RegExp(`merged, goes at ${clockText(RECLAIM)}`));
    });
});

describe("a lane's history in the Lanes view", () => {
    it("every lane has a History node, last, fetched when expanded", () => {
        for (const lane of buildTree(sampleStatus()).filter((n) => n.kind === "lane")) {
            const last = lane.children[lane.children.length - 1];
            assert.deepEqual(last, historyNode(lane.label));
            assert.equal(last.kind, "history");
            assert.equal(last.lazy, true);
            assert.equal(last.id, `lane:${lane.label}/history`);
        }
    });

    it("lists the entries newest first, with when, who, the service and why", () => {
        const entries: HistoryEntryInfo[] = [
            { at: 1796290000, lane: "feature-x", event: "create", owner: "bob", actor: "bob", service: null, reason: "lane create" },
            { at: 1796290060, lane: "feature-x", event: "deploy", owner: "bob", actor: "bob", service: "demo.b", reason: "deployed demo.b feat/login@01234567" },
            { at: 1796293500, lane: "feature-x", event: "reclaim", owner: "bob", actor: null, service: null, reason: "merged: demo.b: branch feat/login into main" },
        ];
        const nodes = historyEntryNodes("feature-x", entries);
        assert.deepEqual(
            nodes.map((n) => [n.label, n.description, n.icon]),
            [
                ["reclaim", `${utcText(1796293500)} · lane agent · merged: demo.b: branch feat/login into main`, "trash"],
                ["deploy", `${utcText(1796290060)} · bob · demo.b · deployed demo.b feat/login@01234567`, "cloud-upload"],
                ["create", `${utcText(1796290000)} · bob · lane create`, "add"],
            ],
        );
        assert.equal(utcText(0), "1970-01-01 00:00:00 UTC");
        assert.match(nodes[0].tooltip ?? "", /owner bob/);
        // Stable ids (entries are only appended): oldest is 0.
        assert.deepEqual(nodes.map((n) => n.id), ["lane:feature-x/history/2", "lane:feature-x/history/1", "lane:feature-x/history/0"]);
        assert.deepEqual(historyEntryNodes("x", []).map((n) => n.label), ["no history yet"]);
    });
});
