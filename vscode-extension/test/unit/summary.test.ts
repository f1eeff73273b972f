import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import type { LaneStatus } from "../../src/lsp_ext";
import { LANE_GLYPH, formatDuration, pickWorkspace, statusBarText, statusBarTooltip, statusBarWarns } from "../../src/summary";
import { sampleStatus } from "../fixtures/status";

function withStatus(over: Partial<LaneStatus>): LaneStatus {
    return { ...sampleStatus(), ...over };
}

describe("the status-bar glyph", () => {
    it("is the activity bar's codicon, not a character fonts may lack (U+26D9 renders as a box)", () => {
        const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "..", "package.json"), "utf8")) as {
            contributes: { viewsContainers: { activitybar: { icon: string }[] } };
        };
        assert.equal(LANE_GLYPH, pkg.contributes.viewsContainers.activitybar[0].icon);
        assert.match(LANE_GLYPH, /^\$\([a-z-]+\)$/);
        assert.ok(statusBarText(sampleStatus()).startsWith("$(git-merge) "));
        assert.doesNotMatch(statusBarText(sampleStatus()), /\u26d9/);
    });
});

describe("statusBarText", () => {
    const cases: [string, LaneStatus | undefined, string][] = [
        ["before the first status", undefined, "$(git-merge) lane…"],
        ["lane, branch and health", sampleStatus(), "$(git-merge) feature-x · feat/login · 2/3 healthy"],
        ["all healthy", withStatus({ healthy: 3, total: 3 }), "$(git-merge) feature-x · feat/login · 3/3 healthy"],
        ["baseline with nothing running", withStatus({ activeLane: "baseline", healthy: 0, total: 0 }), "$(git-merge) baseline · feat/login"],
        ["no workspace", withStatus({ workspaces: [] }), "$(git-merge) feature-x · 2/3 healthy"],
        [
            "not a git repository",
            withStatus({ workspaces: [{ ...sampleStatus().workspaces[0], branch: null }] }),
            "$(git-merge) feature-x · 2/3 healthy",
        ],
        [
            "backend unavailable",
            withStatus({ backendError: { code: "unavailable", message: "agent down", help: null } }),
            "$(git-merge) lane: unavailable",
        ],
    ];
    for (const [name, status, want] of cases) {
        it(name, () => assert.equal(statusBarText(status), want));
    }

    it("uses the given workspace folder's branch", () => {
        const s = sampleStatus();
        s.workspaces.push({ ...s.workspaces[0], folder: "/src/c", branch: "other" });
        assert.equal(statusBarText(s, "/src/c"), "$(git-merge) feature-x · other · 2/3 healthy");
        assert.equal(statusBarText(s, "/nowhere"), "$(git-merge) feature-x · feat/login · 2/3 healthy");
    });

    it("in a monorepo, talks about the service of the file being edited", () => {
        const s = sampleStatus();
        s.workspaces = [
            { ...s.workspaces[0], folder: "/mono/services/b", service: "demo.b", branch: "main" },
            { ...s.workspaces[0], folder: "/mono/services/b2", service: "demo.b2", branch: "main" },
            { ...s.workspaces[0], folder: "/mono/services/c", service: "demo.c", branch: "main" },
        ];
        assert.equal(pickWorkspace(s, "/mono/services/c/src/main.go")?.service, "demo.c");
        assert.equal(pickWorkspace(s, "/mono/services/b2/x.go")?.service, "demo.b2", "not a mere string prefix");
        assert.equal(pickWorkspace(s, "/mono/services/b")?.service, "demo.b");
        assert.equal(pickWorkspace(s, "/mono/README.md")?.service, "demo.b", "outside every service: the first");
        assert.equal(pickWorkspace(s, undefined)?.service, "demo.b");
        s.workspaces.push({ ...s.workspaces[0], folder: "/mono", service: "demo.root" });
        assert.equal(pickWorkspace(s, "/mono/services/c/a.go")?.service, "demo.c", "the innermost wins");
        assert.equal(pickWorkspace(s, "/mono/README.md")?.service, "demo.root");
    });
});

describe("statusBarWarns", () => {
    it("warns on unhealthy instances and on backend errors only", () => {
        assert.equal(statusBarWarns(undefined), false);
        assert.equal(statusBarWarns(sampleStatus()), true);
        assert.equal(statusBarWarns(withStatus({ healthy: 3, total: 3 })), false);
        assert.equal(statusBarWarns(withStatus({ healthy: 0, total: 0, backendError: { code: "x", message: "y", help: null } })), true);
    });
});

describe("statusBarTooltip", () => {
    it("shows service, chain, owner, expiry and traffic per service", () => {
        const t = statusBarTooltip(sampleStatus());
        assert.match(t, /Service `demo.b` on `feat\/login` \(01234567\)/);
        assert.match(t, /lane \*\*feature-x\*\* → team → baseline/);
        assert.match(t, /Owner bob, expires in 5h 12m/);
        assert.match(t, /\| demo.b \| feat\/login@01234567 \| healthy \| 12 \|/);
        assert.match(t, /\| demo.c \| fix@89abcdef \| starting \| 0 \|/);
        assert.match(t, /2\/3 healthy, 15 req\/min/);
        assert.match(t, /router 127.0.0.1:4080 · backend local/);
    });

    it("explains baseline and a missing lane", () => {
        assert.match(statusBarTooltip(withStatus({ activeLane: "baseline" })), /enter \*\*baseline\*\*/);
        assert.match(statusBarTooltip(withStatus({ activeLane: "gone" })), /does not exist/);
    });

    it("shows the backend error with its help", () => {
        const t = statusBarTooltip(withStatus({ backendError: { code: "unavailable", message: "no agent", help: "run lane status" } }));
        assert.match(t, /lane is unavailable\*\* \(unavailable\): no agent/);
        assert.match(t, /run lane status/);
    });
});

describe("formatDuration", () => {
    const cases: [number, string][] = [
        [0, "0s"],
        [-5, "0s"],
        [45, "45s"],
        [60, "1m"],
        [3600, "1h"],
        [5 * 3600 + 12 * 60 + 7, "5h 12m"],
        [3 * 86400 + 4 * 3600 + 59, "3d 4h"],
        [86400 + 30, "1d"],
    ];
    for (const [secs, want] of cases) {
        it(`${secs}s → ${want}`, () => assert.equal(formatDuration(secs), want));
    }
});
