// The names and shapes in src/lsp_ext.ts against what the server says it speaks
// (`lane lsp --describe`), both ways: a name on one side only fails.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";

import * as ext from "../../src/lsp_ext";
import { laneBin } from "./harness";

function describeServer(): ext.Description {
    const r = spawnSync(laneBin(), ["lsp", "--describe"], { encoding: "utf8", timeout: 20000 });
    assert.equal(r.status, 0, `lane lsp --describe failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as ext.Description;
}

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

describe("lsp_ext.ts matches lane lsp --describe", () => {
    const d = describeServer();

    it("protocol version", () => assert.equal(d.protocolVersion, ext.PROTOCOL_VERSION));

    it("requests", () => {
        assert.deepEqual(sorted(d.requests.map((r) => r.method)), sorted(ext.REQUESTS));
        assert.deepEqual(
            d.requests.map((r) => [r.method, r.direction, r.result]),
            [
                [ext.status.method, "clientToServer", "LaneStatus"],
                [ext.history.method, "clientToServer", "HistoryEntryInfo[]"],
            ],
        );
    });

    it("notifications", () => {
        assert.deepEqual(sorted(d.notifications.map((n) => n.method)), sorted(ext.NOTIFICATIONS));
        assert.deepEqual(
            d.notifications.map((n) => [n.method, n.direction, n.params]),
            [
                [ext.statusChanged.method, "serverToClient", "LaneStatus"],
                [ext.agentRestarted.method, "serverToClient", "AgentRestartInfo"],
            ],
        );
    });

    it("commands, with argument and result types and progress", () => {
        assert.deepEqual(sorted(d.commands.map((c) => c.command)), sorted(ext.COMMANDS));
        const ours = Object.values(ext.Commands).map((c) => ({
            command: c.name,
            arguments: c.argsType,
            result: c.resultType,
            progress: c.progress,
        }));
        const key = (c: { command: string }): string => c.command;
        assert.deepEqual(
            [...d.commands].sort((a, b) => key(a).localeCompare(key(b))),
            ours.sort((a, b) => key(a).localeCompare(key(b))),
        );
    });

    it("error codes", () => {
        assert.equal(d.errors.laneError, ext.LANE_ERROR);
        assert.equal(d.errors.invalidParams, ext.INVALID_PARAMS);
        assert.equal(d.errors.requestCancelled, ext.REQUEST_CANCELLED);
        assert.equal(d.errors.data, "ErrorInfo");
    });

    it("every type, with exactly its fields", () => {
        assert.deepEqual(sorted(Object.keys(d.types)), sorted(Object.keys(ext.TYPE_FIELDS)));
        for (const [name, fields] of Object.entries(d.types)) {
            assert.deepEqual(sorted(Object.keys(fields)), ext.TYPE_FIELDS[name], `fields of ${name}`);
        }
    });

    it("every type a command names is one we mirror", () => {
        for (const c of d.commands) {
            for (const t of [c.arguments, c.result]) {
                assert.ok(ext.TYPE_FIELDS[t.replace(/\[\]$/, "")], `${c.command} uses ${t}`);
            }
        }
    });
});
