// A new user's first step (issue 14, item 7): the empty Lanes view's welcome, and a deploy picker
// that proposes a lane named after the branch.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

import { laneNameFromBranch, lanePicks } from "../../src/picks";
import { buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8")) as {
    contributes: { viewsWelcome?: { view: string; contents: string; when?: string }[] };
};

describe("the empty Lanes view", () => {
    it("has no rows when nothing runs, so VS Code shows its welcome", () => {
        assert.deepEqual(buildTree({ ...sampleStatus(), lanes: [], baseline: [], deployFailures: [] }), []);
    });
    it("the welcome's first step is 'Deploy current branch to a lane'", () => {
        const welcome = pkg.contributes.viewsWelcome?.find((w) => w.view === "lane.lanes");
        assert.ok(welcome, "a viewsWelcome for lane.lanes");
        assert.match(welcome.contents, /^\[Deploy current branch to a lane\]\(command:lane\.deploy\)$/m);
        assert.equal(welcome.when, undefined, "shown whenever the view is empty");
    });
});

describe("laneNameFromBranch", () => {
    const cases: [string | null, string | undefined][] = [
        ["feature/login", "feature-login"],
        ["Fix/JIRA-123_crash", "fix-jira-123-crash"],
        ["main", "main"],
        ["--x--", "x"],
        ["baseline", undefined],
        ["HEAD", undefined],
        [null, undefined],
        ["a".repeat(39) + "/b", "a".repeat(39)],
    ];
    for (const [branch, want] of cases) it(String(branch), () => assert.equal(laneNameFromBranch(branch), want));
});

describe("the deploy picker", () => {
    const suggestNew = { lane: "feature-login", why: "named after branch feature/login" };
    it("proposes a new lane named after the branch, first", () => {
        const picks = lanePicks(sampleStatus().lanes, { activeLane: "feature-x", includeNew: true, suggestNew });
        assert.deepEqual(picks[0], {
            label: "$(add) New lane feature-login",
            description: "named after branch feature/login",
            lane: "feature-login",
            isNew: true,
        });
    });
    it("not when that lane exists (it is listed as it is)", () => {
        const lanes = sampleStatus().lanes;
        const picks = lanePicks([...lanes, { ...lanes[1], id: "feature-login" }], { activeLane: "feature-x", includeNew: true, suggestNew });
        assert.equal(picks.filter((p) => p.lane === "feature-login").length, 1);
        assert.notEqual(picks.find((p) => p.lane === "feature-login")?.isNew, true);
    });
});
