import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { dataNode, withDataNodes } from "../../src/dataModel";
import { LaneData } from "../../src/laneData";
import type { CommandSpec, DataInfo, LaneStatus } from "../../src/lsp_ext";
import { type TreeNode, buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

const rows: DataInfo[] = [
    { lane: "feature-x", binding: "orders", kind: "mysql", target: "orders__lane_feature_x", size: "32768 bytes", quota: "2 rows/table, 1048576 bytes" },
    { lane: "feature-x", binding: "cache", kind: "redis", target: "41", size: "3 keys", quota: "pool 41..=44" },
    { lane: "feature-x", binding: "sessions", kind: "redis", target: "lane:feature-x:", size: "40 keys, ~6400 bytes (approximate)", quota: null },
    { lane: "team", binding: "config", kind: "apollo", target: "lane-team", size: null, quota: null },
    { lane: "gone", binding: "cache", kind: "redis", target: "42", size: null, quota: null },
];

function render(nodes: TreeNode[], indent = ""): string[] {
    return nodes.flatMap((n) => [
        `${indent}${n.label}${n.description ? ` — ${n.description}` : ""} [${n.kind}:${n.icon}]`,
        ...render(n.children, indent + "  "),
    ]);
}

describe("the Data node", () => {
    it("lists a lane's bindings and copies, sorted, first under the lane", () => {
        const tree = render(withDataNodes(buildTree(sampleStatus()), rows));
        const x = tree.indexOf("feature-x — active · 2/3 healthy · expires in 5h 12m · 15 req/min [lane:debug-stackframe]");
        assert.deepEqual(tree.slice(x + 1, x + 5), [
            "  Data — 3 bindings [data:database]",
            "    cache — redis · 41 · 3 keys · pool 41..=44 [dataBinding:layers]",
            "    orders — mysql · orders__lane_feature_x · 32768 bytes · 2 rows/table, 1048576 bytes [dataBinding:database]",
            "    sessions — redis · lane:feature-x: · 40 keys, ~6400 bytes (approximate) [dataBinding:layers]",
        ]);
        const team = tree.indexOf("team — expired · 0 req/min [lane:git-merge]");
        assert.deepEqual(tree.slice(team + 1, team + 4), [
            "  Data — 1 binding [data:database]",
            "    config — apollo · lane-team [dataBinding:settings-gear]",
            "  no personal versions yet [message:info]",
        ]);
        assert.ok(!tree.some((l) => l.includes("42")), "a lane not in the status gets no node");
    });

    it("adds nothing when no lane owns data or the rows are not known yet", () => {
        const plain = buildTree(sampleStatus());
        assert.deepEqual(withDataNodes(plain, undefined), plain);
        assert.deepEqual(withDataNodes(plain, []), plain);
        assert.equal(dataNode("baseline", rows), undefined);
    });

    it("ids are unique and carry the lane", () => {
        const ids = new Set<string>();
        const walk = (ns: TreeNode[]): void => {
            for (const n of ns) {
                assert.ok(!ids.has(n.id), `duplicate id ${n.id}`);
                ids.add(n.id);
                assert.ok(n.lane, `${n.id} has a lane`);
                walk(n.children);
            }
        };
        walk(withDataNodes(buildTree(sampleStatus()), rows));
        assert.ok(ids.has("lane:feature-x/data/orders"));
    });
});

describe("LaneData", () => {
    it("asks lane.data.ls once per status revision and reports changes", async () => {
        const calls: string[] = [];
        let answer: DataInfo[] = rows.slice(0, 1);
        let changed = 0;
        const data = new LaneData(
            {
                exec: <A, R>(cmd: CommandSpec<A, R>, args?: A): Promise<R> => {
                    calls.push(`${cmd.name} ${JSON.stringify(args)}`);
                    return Promise.resolve(answer as unknown as R);
                },
            },
            () => changed++,
            () => {},
        );
        const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 10));
        const status: LaneStatus = sampleStatus();
        data.update(status);
        await settle();
        data.update(status);
        await settle();
        assert.deepEqual(calls, ['lane.data.ls {"lane":null,"folder":null}']);
        assert.deepEqual(data.rows, rows.slice(0, 1));
        assert.equal(changed, 1);
        answer = rows.slice(0, 2);
        data.update({ ...status, revision: `${status.revision}-next` });
        await settle();
        assert.equal(calls.length, 2);
        assert.equal(changed, 2);
        data.update({ ...status, revision: "r3", backendError: { code: "unavailable", message: "down", help: null } });
        await settle();
        assert.equal(calls.length, 2, "not asked while the backend is unavailable");
        // An import changes sizes, not the revision: reload asks again for the same revision.
        const next = { ...status, revision: `${status.revision}-next` };
        answer = rows.slice(0, 3);
        data.update(next);
        await settle();
        assert.equal(calls.length, 2, "the same revision is not asked again");
        data.reload(next);
        await settle();
        assert.equal(calls.length, 3);
        assert.deepEqual(data.rows, rows.slice(0, 3));
        assert.equal(changed, 3);
    });
});
