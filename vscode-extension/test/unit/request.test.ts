import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { WorkspaceInfo } from "../../src/lsp_ext";
import { buildRequests, clipboardText, shellQuote } from "../../src/request";
import { sampleStatus } from "../fixtures/status";

const ws = (over: Partial<WorkspaceInfo> = {}): WorkspaceInfo => ({ ...sampleStatus().workspaces[0], ...over });

describe("buildRequests", () => {
    const cases: [string, WorkspaceInfo, { router: string; header: string; lane: string }, string, string?][] = [
        [
            "http service in a lane",
            ws(),
            { router: "127.0.0.1:4080", header: "x-lane", lane: "feature-x" },
            "curl -sS -i -H 'x-lane: feature-x' http://b.demo.localhost:4080/",
        ],
        [
            "baseline sends no header",
            ws(),
            { router: "127.0.0.1:4080", header: "x-lane", lane: "baseline" },
            "curl -sS -i http://b.demo.localhost:4080/",
        ],
        [
            "configured header",
            ws(),
            { router: "127.0.0.1:4080", header: "x-swimlane", lane: "f1" },
            "curl -sS -i -H 'x-swimlane: f1' http://b.demo.localhost:4080/",
        ],
        [
            "host and url derived when the server sent none",
            ws({ host: null, url: null, service: "shop.cart" }),
            { router: "127.0.0.1:41234", header: "x-lane", lane: "f1" },
            "curl -sS -i -H 'x-lane: f1' http://cart.shop.localhost:41234/",
        ],
        [
            "a router that is not on loopback",
            ws({ host: "b.demo.localhost:4080", url: "http://b.demo.localhost:4080/" }),
            { router: "10.1.2.3:4080", header: "x-lane", lane: "f1" },
            "curl -sS -i -H 'x-lane: f1' --connect-to b.demo.localhost:4080:10.1.2.3:4080 http://b.demo.localhost:4080/",
        ],
        [
            "grpc service gets grpcurl too",
            ws({ protocol: "grpc" }),
            { router: "127.0.0.1:4080", header: "x-lane", lane: "feature-x" },
            "curl -sS -i -H 'x-lane: feature-x' http://b.demo.localhost:4080/",
            "grpcurl -plaintext -authority b.demo.localhost -H 'x-lane: feature-x' 127.0.0.1:4080 list",
        ],
    ];
    for (const [name, w, target, curl, grpcurl] of cases) {
        it(name, () => {
            const r = buildRequests(w, target);
            assert.equal(r.curl, curl);
            assert.equal(r.grpcurl, grpcurl);
        });
    }

    it("refuses a workspace without a service", () => {
        assert.throws(
            () => buildRequests(ws({ service: null, host: null, url: null }), { router: "127.0.0.1:1", header: "x-lane", lane: "a" }),
            /no service/,
        );
    });

    it("clipboard text puts grpcurl first", () => {
        assert.equal(clipboardText({ curl: "c" }), "c\n");
        assert.equal(clipboardText({ curl: "c", grpcurl: "g" }), "g\nc\n");
    });
});

describe("shellQuote", () => {
    const cases: [string, string][] = [
        ["plain", "plain"],
        ["http://a.b:1/x", "http://a.b:1/x"],
        ["x-lane: f", "'x-lane: f'"],
        ["it's", "'it'\\''s'"],
        ["", "''"],
    ];
    for (const [input, want] of cases) it(JSON.stringify(input), () => assert.equal(shellQuote(input), want));
});
