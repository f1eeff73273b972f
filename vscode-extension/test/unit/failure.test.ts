// A failed deploy (issue 14, item 5): one readable popup with a button to the output, and the
// failure on the service in the Lanes view until the next deploy.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { errorAction, errorText, toUserError } from "../../src/errors";
import { LANE_ERROR, type DeployFailure } from "../../src/lsp_ext";
import { buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

const buildFailed = toUserError({
    code: LANE_ERROR,
    message: "x",
    data: {
        code: "build_failed",
        message: "the build `make` failed (exit status: 2):\n    main.go:3: syntax error",
        help: "fix the build, or run it by hand in the repository to see everything",
    },
});

describe("a failed deploy's notification", () => {
    it("the error and its help are two sentences, the output's lines are left to the output, no backticks", () => {
        assert.equal(
            errorText("Deploy", buildFailed),
            'Lane: Deploy failed: the build "make" failed (exit status: 2). Fix the build, or run it by hand in the repository to see everything.',
        );
    });
    it("offers the build output", () => {
        assert.equal(errorAction(buildFailed), "Show Build Output");
        assert.equal(errorAction({ cancelled: false, code: "unhealthy", message: "m" }), "Show Service Output");
        assert.equal(errorAction({ cancelled: false, code: "not_owner", message: "m" }), undefined);
    });
});

describe("the failure in the Lanes view", () => {
    const failure: DeployFailure = {
        service: "demo.b",
        lane: "feature-x",
        branch: "feat/login",
        commit: "fedcba9876543210",
        error: { code: "build_failed", message: "the build `make` failed", help: null },
        at: 1,
    };
    it("on the service of its lane, in place of its row", () => {
        const tree = buildTree({ ...sampleStatus(), deployFailures: [failure] });
        const lane = tree.find((n) => n.label === "feature-x");
        const b = lane?.children.find((n) => n.label === "demo.b");
        assert.ok(b, JSON.stringify(tree));
        assert.equal(b.icon, "error");
        assert.match(b.description ?? "", /^last deploy failed: build failed \(feat\/login@fedcba98\) · /);
        assert.match(b.tooltip ?? "", /the build `make` failed/);
        assert.equal(b.command, "lane.showLogs");
    });
    it("a failed deploy into a lane that is gone gets its own row", () => {
        const tree = buildTree({ ...sampleStatus(), deployFailures: [{ ...failure, lane: "gone" }] });
        assert.equal(tree[0].label, "demo.b");
        assert.equal(tree[0].description, "last deploy failed: build failed (feat/login@fedcba98) · into gone");
    });
    it("no failure, no mark", () => {
        const tree = buildTree(sampleStatus());
        const b = tree.find((n) => n.label === "feature-x")?.children.find((n) => n.label === "demo.b");
        assert.notEqual(b?.icon, "error");
    });
});
