import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { type TreeNode, buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

/** A node as one line: `label — description [icon]`, children indented. */
function render(nodes: TreeNode[], indent = ""): string[] {
    return nodes.flatMap((n) => [
        `${indent}${n.label}${n.description ? ` — ${n.description}` : ""} [${n.kind}:${n.icon}]`,
        ...render(n.children, indent + "  "),
    ]);
}

describe("buildTree", () => {
    it("lanes → services → instances, then baseline", () => {
        assert.deepEqual(render(buildTree(sampleStatus())), [
            "feature-x — active · 2/3 healthy · expires in 5h 12m · 15 req/min [lane:debug-stackframe]",
            "  demo.b — feat/login@01234567 · 1/1 healthy · 12 req/min [service:pass-filled]",
            "  demo.c — fix@89abcdef · 1/2 healthy · 3 req/min [service:warning]",
            "    127.0.0.1:46011 — healthy · 3 req/min [instance:pass-filled]",
            "    127.0.0.1:46012 — starting · 0 req/min [instance:loading~spin]",
            "  History [history:history]",
            "team — expired · 0 req/min [lane:git-merge]",
            "  no personal versions yet [message:info]",
            "  History [history:history]",
            "baseline — 2/2 healthy · 47 req/min [baseline:home]",
            "  demo.a — baseline · 1/1 healthy · 40 req/min [service:pass-filled]",
            "  demo.b — baseline · 1/1 healthy · 7 req/min [service:pass-filled]",
        ]);
    });

    it("ids are unique and stable, and nodes carry their lane", () => {
        const ids: string[] = [];
        const walk = (ns: TreeNode[]): void => {
            for (const n of ns) {
                ids.push(n.id);
                assert.ok(n.lane, `${n.id} has a lane`);
                walk(n.children);
            }
        };
        walk(buildTree(sampleStatus()));
        assert.equal(new Set(ids).size, ids.length);
        assert.deepEqual(
            buildTree(sampleStatus()).map((n) => n.id),
            ["lane:feature-x", "lane:team", "lane:baseline"],
        );
    });

    it("marks baseline active when no lane is", () => {
        const s = { ...sampleStatus(), activeLane: "baseline" };
        const roots = buildTree(s);
        assert.deepEqual(
            roots.map((n) => [n.label, n.active]),
            [["feature-x", false], ["team", false], ["baseline", true]],
        );
    });

    it("shows a single message before the first status and on backend errors", () => {
        assert.deepEqual(render(buildTree(undefined)), ["Waiting for lane lsp… [message:info]"]);
        const s = { ...sampleStatus(), backendError: { code: "unavailable", message: "agent down", help: null } };
        assert.deepEqual(render(buildTree(s)), ["lane is unavailable: agent down [message:info]"]);
    });
});
