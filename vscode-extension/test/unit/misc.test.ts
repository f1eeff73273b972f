import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { errorText, laneIdProblem, toUserError } from "../../src/errors";
import { locateServer } from "../../src/locate";
import { LANE_ERROR, REQUEST_CANCELLED } from "../../src/lsp_ext";
import { lanePicks } from "../../src/picks";
import { sampleStatus } from "../fixtures/status";

describe("locateServer", () => {
    const exists = (paths: string[]) => (p: string) => paths.includes(p);
    it("env wins over setting and PATH", () => {
        const r = locateServer({ env: "/e/lane", setting: "/s/lane", pathVar: "/p", isExecutable: exists(["/e/lane", "/s/lane", "/p/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/e/lane", source: "env" } });
    });
    it("setting wins over PATH, with ~ expanded", () => {
        const r = locateServer({ setting: "~/bin/lane", home: "/home/u", pathVar: "/p", isExecutable: exists(["/home/u/bin/lane", "/p/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/home/u/bin/lane", source: "setting" } });
    });
    it("PATH in order", () => {
        const r = locateServer({ pathVar: "/a::/b:/c", isExecutable: exists(["/b/lane", "/c/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/b/lane", source: "path" } });
    });
    it("a wrong explicit choice is an error, not a fall-through", () => {
        const r = locateServer({ setting: "/nope", pathVar: "/p", isExecutable: exists(["/p/lane"]) });
        assert.deepEqual(r, { ok: false, tried: ["lane.server.path=/nope"] });
    });
    it("nothing found", () => {
        assert.deepEqual(locateServer({ pathVar: "/p", isExecutable: () => false }), { ok: false, tried: ["PATH", "/usr/local/bin"] });
    });
});

describe("toUserError", () => {
    it("reads the lane error data", () => {
        const u = toUserError({ code: LANE_ERROR, message: "x", data: { code: "not_owner", message: "ann owns f1", help: "pass force" } });
        assert.deepEqual(u, { cancelled: false, code: "not_owner", message: "ann owns f1", help: "pass force" });
        assert.equal(errorText("Deploy", u), "Lane: Deploy failed: ann owns f1. Pass force.");
    });
    it("knows cancellation, by JSON-RPC code and by lane code", () => {
        assert.equal(toUserError({ code: REQUEST_CANCELLED, message: "c" }).cancelled, true);
        assert.equal(toUserError({ code: LANE_ERROR, message: "c", data: { code: "cancelled", message: "c", help: null } }).cancelled, true);
    });
    it("passes other errors through", () => {
        assert.deepEqual(toUserError(new Error("boom")), { cancelled: false, message: "boom" });
        assert.deepEqual(toUserError("str"), { cancelled: false, message: "str" });
    });
});

describe("laneIdProblem", () => {
    const cases: [string, boolean][] = [["feature-x", true], ["a", true], ["", false], ["Feature", false], ["-a", false], ["a-", false], ["baseline", false], ["a".repeat(40), true], ["a".repeat(41), false]];
    for (const [id, ok] of cases) it(JSON.stringify(id), () => assert.equal(laneIdProblem(id) === undefined, ok));
});

describe("lanePicks", () => {
    it("active first, then by id, then baseline and New lane", () => {
        const s = sampleStatus();
        const picks = lanePicks(s.lanes, { activeLane: "feature-x", includeBaseline: true, includeNew: true });
        assert.deepEqual(
            picks.map((p) => [p.label, p.description, p.lane]),
            [
                ["$(debug-stackframe) feature-x", "active · 2/3 healthy · expires in 5h 12m", "feature-x"],
                ["$(git-merge) team", "empty · expired", "team"],
                ["$(home) baseline", "no lane header", "baseline"],
                ["$(add) New lane…", undefined, undefined],
            ],
        );
        assert.equal(picks[0].detail, "demo.b feat/login@01234567, demo.c fix@89abcdef");
    });
});
