// The extension's conversation with the real `lane lsp`, message for message: initialize, the
// initial `lane/status`, then the commands the extension's UI sends, with the pushed
// `lane/statusChanged` notifications and the deploy's work-done progress (and its cancellation).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";

import * as ext from "../../src/lsp_ext";
import { toUserError } from "../../src/errors";
import { LaneProxy } from "../../src/proxy";
import { copiedText, deployedRequests } from "../../src/request";
import { statusBarText, statusPlainText } from "../../src/summary";
import { buildTree } from "../../src/treeModel";
import { Server, initializeParams, makeEnv, sampleManifest } from "./harness";

function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as net.AddressInfo).port;
            srv.close(() => resolve(port));
        });
    });
}

/** GET `url` through the HTTP proxy on `port` (absolute-form request line, as with HTTP_PROXY). */
function viaProxy(port: number, url: string): Promise<string> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, method: "GET", path: url, headers: { host: new URL(url).host } }, (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve(`${res.statusCode} ${body}`));
        });
        req.on("error", reject);
        req.setTimeout(20000, () => req.destroy(new Error("timed out")));
        req.end();
    });
}

async function rejects(p: Promise<unknown>): Promise<unknown> {
    try {
        await p;
    } catch (e) {
        return e;
    }
    throw new Error("expected the request to fail");
}

describe("lane lsp, driven like the extension drives it", () => {
    let server: Server;

    before(() => {
        server = Server.start(makeEnv("wire", sampleManifest()));
    });
    after(async () => {
        await server?.close();
    });

    it("initialize advertises every command and work-done progress is accepted", async () => {
        type InitializeResult = {
            capabilities: {
                executeCommandProvider?: { commands: string[] };
                experimental?: { laneProtocolVersion?: number };
            };
        };
        const init = await server.conn.sendRequest<InitializeResult>("initialize", initializeParams(server.env));
        assert.equal(init.capabilities.experimental?.laneProtocolVersion, ext.PROTOCOL_VERSION);
        assert.deepEqual([...(init.capabilities.executeCommandProvider?.commands ?? [])].sort(), [...ext.COMMANDS].sort());
        await server.conn.sendNotification("initialized", {});
    });

    it("lane/status: the workspace's service and branch, baseline active", async () => {
        const s = await server.conn.sendRequest(ext.status);
        assert.equal(s.workspaces.length, 1);
        const ws = s.workspaces[0];
        assert.equal(ws.service, "demo.b");
        assert.equal(ws.branch, "main");
        assert.equal(ws.protocol, "http");
        assert.equal(s.activeLane, ext.BASELINE);
        assert.equal(s.laneHeader, "x-lane");
        assert.equal(statusBarText(s), "$(git-merge) baseline · main");
    });

    it("lane.create → pushed status has the lane", async () => {
        const lane = await server.exec(ext.Commands.create, { lane: "ext-a", parent: null, ttl: "2h" });
        assert.equal(lane.id, "ext-a");
        assert.ok(lane.expiresInSecs > 7000 && lane.expiresInSecs <= 7200, `expiresInSecs ${lane.expiresInSecs}`);
        await server.waitForStatus("a status with ext-a", (s) => s.lanes.some((l) => l.id === "ext-a"));
    });

    it("a bad lane id is a lane error with help, not a crash", async () => {
        const e = await rejects(server.exec(ext.Commands.create, { lane: "Not_Valid", parent: null, ttl: null }));
        const u = toUserError(e);
        assert.equal(u.cancelled, false);
        assert.ok(u.code === "invalid_input" || (e as { code: number }).code === ext.INVALID_PARAMS, JSON.stringify(e));
    });

    it("lane.switchTraffic → the status bar follows the push", async () => {
        const r = await server.exec(ext.Commands.switchTraffic, { lane: "ext-a" });
        assert.equal(r.activeLane, "ext-a");
        const s = await server.waitForStatus("activeLane ext-a", (s) => s.activeLane === "ext-a");
        assert.equal(statusBarText(s), "$(git-merge) ext-a · main");
    });

    it("lane.list has the lane", async () => {
        const lanes = await server.exec(ext.Commands.list);
        assert.deepEqual(lanes.map((l) => l.id), ["ext-a"]);
    });

    it("lane.deployCurrentBranch reports progress stage by stage, then the lane is healthy", async () => {
        const before = server.progress.length;
        const r = await server.exec(ext.Commands.deployCurrentBranch, {
            folder: server.env.repo,
            lane: "ext-a",
            parent: null,
            ttl: null,
            force: false,
        });
        assert.equal(r.service, "demo.b");
        assert.equal(r.lane, "ext-a");
        assert.equal(r.branch, "main");
        assert.equal(r.state, "healthy");
        assert.ok(server.created.length > 0, "the server created a work-done progress token");
        const mine = server.progress.slice(before);
        const kinds = mine.map((p) => p.value.kind);
        assert.equal(kinds[0], "begin", JSON.stringify(mine));
        assert.equal(kinds[kinds.length - 1], "end");
        assert.equal(mine[0].value.cancellable, true, "deploys are cancellable");
        assert.ok(kinds.filter((k) => k === "report").length >= 2, `stage reports: ${JSON.stringify(mine)}`);
        const s = await server.waitForStatus("ext-a 1/1 healthy", (s) => s.activeLane === "ext-a" && s.healthy === 1 && s.total === 1);
        assert.equal(statusBarText(s), "$(git-merge) ext-a · main · 1/1 healthy");
        // The Lane output ("Show Server Logs") got the deploy stage by stage, and the service's
        // output is a file "Show Logs" opens.
        for (const want of ["[demo.b] deploying main@", "[demo.b] build: ", "[demo.b] start: ", "[demo.b] health: "]) {
            assert.ok(server.logs.some((l) => l.startsWith(want)), `no ${want} in ${JSON.stringify(server.logs)}`);
        }
        const log = s.lanes.find((l) => l.id === "ext-a")?.services[0].log;
        assert.ok(log && existsSync(log), `log file ${log}`);
        assert.match(statusPlainText(s), /^service +version +health +req\/min$/m);
        const tree = buildTree(s);
        assert.equal(tree[0].label, "ext-a");
        assert.equal(tree[0].children[0].label, "demo.b");
        assert.match(tree[0].children[0].description ?? "", /^main@\w+ · 1\/1 healthy · \d+ req\/min$/);
    });

    it("the lane proxy the extension starts makes a plain request follow Switch Traffic", async () => {
        const port = await freePort();
        const lines: string[] = [];
        let changes = 0;
        const proxy = new LaneProxy(server.env.bin, server.env.env, server.env.repo, `127.0.0.1:${port}`, (l) => lines.push(l), () => changes++);
        assert.equal(proxy.running, false);
        await proxy.start();
        try {
            assert.equal(proxy.running, true, lines.join("\n"));
            assert.equal(changes, 1);
            const s = await server.conn.sendRequest(ext.status);
            assert.equal(s.activeLane, "ext-a");
            // A plain request (no lane header) sent through the proxy, as curl with HTTP_PROXY sends it.
            const body = await viaProxy(port, s.workspaces[0].url ?? "");
            assert.match(body, /b \(lane header: ext-a\)/, body);
        } finally {
            proxy.stop();
            await server.waitFor("the proxy to stop", () => (proxy.running ? undefined : true));
        }
        assert.equal(changes, 2);
    });

    it("Copy Request after a deploy into a new lane, with traffic on baseline, reaches that lane's version", async () => {
        await server.exec(ext.Commands.switchTraffic, { lane: ext.BASELINE });
        await server.waitForStatus("traffic on baseline", (s) => s.activeLane === ext.BASELINE);
        const r = await server.exec(ext.Commands.deployCurrentBranch, {
            folder: server.env.repo,
            lane: "ext-b",
            parent: null,
            ttl: null,
            force: false,
        });
        assert.equal(r.lane, "ext-b");
        assert.equal(r.laneHeader, "x-lane");
        assert.match(r.host ?? "", /^b\.demo\.localhost:\d+$/);
        const { requests, target } = deployedRequests(r, "http");
        assert.equal(target.lane, "ext-b");
        assert.match(requests.curl, /-H 'x-lane: ext-b'/);
        assert.equal(copiedText("demo.b", target, requests), `Lane: copied a request to demo.b in lane ext-b (header x-lane: ext-b): ${requests.curl}`);
        // The copied command itself, run by a shell as the user would.
        const out = spawnSync("sh", ["-c", requests.curl], { encoding: "utf8", timeout: 20000 });
        assert.equal(out.status, 0, `curl failed (is curl installed?): ${out.stderr}`);
        assert.match(out.stdout, /^HTTP\/1\.1 200/, out.stdout);
        assert.match(out.stdout, /b \(lane header: ext-b\)/, out.stdout);
    });

    it("cancelling a deploy's progress cancels the deploy", async () => {
        // Re-deploy into a new lane with a build that would take a minute; cancel at the first report.
        const before = server.created.length;
        const { writeFileSync } = await import("node:fs");
        writeFileSync(`${server.env.repo}/lane.toml`, sampleManifest("sleep 60")(server.env.bin));
        const deploying = server.exec(ext.Commands.deployCurrentBranch, {
            folder: server.env.repo,
            lane: "ext-slow",
            parent: null,
            ttl: null,
            force: false,
        });
        const token = await server.waitFor("a progress token", () => server.created[before]);
        await server.waitFor("progress begin", () => server.progress.find((p) => p.token === token && p.value.kind === "begin"));
        const started = Date.now();
        await server.conn.sendNotification("window/workDoneProgress/cancel", { token });
        const u = toUserError(await rejects(deploying));
        assert.equal(u.cancelled, true, JSON.stringify(u));
        assert.ok(Date.now() - started < 15000, "cancelled promptly");
        await server.waitFor("progress end", () => server.progress.find((p) => p.token === token && p.value.kind === "end"));
        writeFileSync(`${server.env.repo}/lane.toml`, sampleManifest()(server.env.bin));
    });

    it("lane.delete → pushed status without it, traffic back on baseline", async () => {
        for (const lane of ["ext-slow", "ext-b", "ext-a"]) {
            try {
                const r = await server.exec(ext.Commands.delete, { lane, force: true });
                assert.deepEqual(r, { deleted: lane, stopped: lane === "ext-slow" ? [] : ["demo.b"], activeLane: ext.BASELINE });
            } catch (e) {
                if (lane === "ext-a") throw e; // ext-slow exists only if the cancelled deploy created it
            }
        }
        const s = await server.waitForStatus("no lanes", (s) => s.lanes.length === 0);
        assert.equal(s.activeLane, ext.BASELINE);
        assert.deepEqual(await server.exec(ext.Commands.list), []);
    });
});
