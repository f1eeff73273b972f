import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { backupPicks, backupTime, dataTarget, exportFileName, replaceConfirmText, sizeText, transferText } from "../../src/dataOps";
import type { DataBackupInfo, DataTransferResult } from "../../src/lsp_ext";

const backups: DataBackupInfo[] = [
    { lane: "feature-x", name: "20261130T090000Z", path: "/h/backups/feature-x/20261130T090000Z.lanedata", bytes: 2048 },
    { lane: "other", name: "20261130T100000Z", path: "/h/backups/other/20261130T100000Z.lanedata", bytes: 10 },
    { lane: "feature-x", name: "20261130T124500Z", path: "/h/backups/feature-x/20261130T124500Z.lanedata", bytes: 1536000 },
];

describe("data actions", () => {
    it("apply to a Data node's lane, or to one binding", () => {
        assert.deepEqual(dataTarget({ kind: "data", lane: "feature-x", label: "Data" }), { lane: "feature-x", binding: null });
        assert.deepEqual(dataTarget({ kind: "dataBinding", lane: "feature-x", label: "orders" }), { lane: "feature-x", binding: "orders" });
        assert.deepEqual(dataTarget({ kind: "lane", lane: "team", label: "team" }), { lane: "team", binding: null });
        assert.equal(dataTarget({ kind: "service", lane: "team", label: "demo.b" }), undefined);
        assert.equal(dataTarget(undefined), undefined);
    });
    it("suggest an export file named for the lane, binding and time", () => {
        const now = new Date(Date.UTC(2026, 10, 30, 9, 5));
        assert.equal(exportFileName({ lane: "feature-x", binding: null }, now), "feature-x-20261130-0905.lanedata");
        assert.equal(exportFileName({ lane: "feature-x", binding: "orders" }, now), "feature-x-orders-20261130-0905.lanedata");
    });
    it("list a lane's backups newest first, with time and size", () => {
        const picks = backupPicks(backups, "feature-x");
        assert.deepEqual(
            picks.map((p) => [p.label, p.description, p.name]),
            [
                ["$(history) 2026-11-30 12:45:00 UTC", "1.5 MB · newest", "20261130T124500Z"],
                ["$(history) 2026-11-30 09:00:00 UTC", "2.0 KB", "20261130T090000Z"],
            ],
        );
        assert.equal(picks[0].detail, "/h/backups/feature-x/20261130T124500Z.lanedata");
        assert.deepEqual(backupPicks(backups, "nobody"), []);
        assert.equal(backupTime("odd"), "odd");
    });
    it("size bytes in words", () => {
        assert.equal(sizeText(1), "1 byte");
        assert.equal(sizeText(1023), "1023 bytes");
        assert.equal(sizeText(1024), "1.0 KB");
        assert.equal(sizeText(50 * 1024 * 1024), "50 MB");
    });
    it("confirm a replacement and say what moved", () => {
        assert.match(replaceConfirmText({ lane: "x", binding: null }, "a.lanedata"), /^Replace the data of lane x with a\.lanedata\?/);
        assert.match(replaceConfirmText({ lane: "x", binding: "orders" }, "a.lanedata"), /^Replace binding orders of lane x/);
        const r: DataTransferResult = {
            lane: "feature-x",
            file: "/tmp/x.lanedata",
            bindings: [
                { binding: "orders", kind: "mysql", target: "o__lane_feature_x", items: 1200, objects: 3 },
                { binding: "cache", kind: "redis", target: "41", items: 3, objects: 0 },
                { binding: "events", kind: "kafka", target: "orders.lane-feature-x", items: 9, objects: 1 },
            ],
            bytes: 1536000,
            seconds: 0.42,
            notes: ["binding `search` (elasticsearch) is left out: its kind is not exported yet"],
        };
        assert.equal(
            transferText("exported", r),
            "Lane: exported lane feature-x (orders: 1200 rows, cache: 3 keys, events: 9 records; 1.5 MB, 0.4s) to /tmp/x.lanedata. " +
                "Left out: binding `search` (elasticsearch) is left out: its kind is not exported yet.",
        );
        assert.match(transferText("restored", { ...r, notes: [] }), / from \/tmp\/x\.lanedata\.$/);
    });
});
