// The server that is not there: where the extension looks for it, and what the view and the
// commands say then (issue 14, item 1).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { installDirs, locateServer, serverNotFoundText } from "../../src/locate";
import { serverNodes } from "../../src/treeModel";

const exists = (paths: string[]) => (p: string) => paths.includes(p);

describe("locateServer beyond PATH (a remote VS Code server's PATH may lack cargo's bin)", () => {
    it("finds `cargo install`'s ~/.cargo/bin/lane when PATH has no lane", () => {
        const r = locateServer({ pathVar: "/usr/bin:/bin", home: "/home/u", isExecutable: exists(["/home/u/.cargo/bin/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/home/u/.cargo/bin/lane", source: "install-dir" } });
    });
    it("CARGO_HOME/bin first, then ~/.cargo/bin, ~/.local/bin, /usr/local/bin", () => {
        assert.deepEqual(installDirs({ cargoHome: "/opt/cargo", home: "/home/u" }), [
            "/opt/cargo/bin",
            "/home/u/.cargo/bin",
            "/home/u/.local/bin",
            "/usr/local/bin",
        ]);
        const r = locateServer({ pathVar: "", cargoHome: "/opt/cargo", home: "/home/u", isExecutable: exists(["/opt/cargo/bin/lane", "/home/u/.cargo/bin/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/opt/cargo/bin/lane", source: "install-dir" } });
    });
    it("PATH still wins", () => {
        const r = locateServer({ pathVar: "/p", home: "/home/u", isExecutable: exists(["/p/lane", "/home/u/.cargo/bin/lane"]) });
        assert.deepEqual(r, { ok: true, located: { path: "/p/lane", source: "path" } });
    });
    it("nothing found: says every place it looked (a PATH entry is not named twice)", () => {
        const r = locateServer({ pathVar: "/usr/local/bin:/bin", home: "/home/u", isExecutable: () => false });
        assert.deepEqual(r, { ok: false, tried: ["PATH", "/home/u/.cargo/bin", "/home/u/.local/bin"] });
    });
});

describe("server not found", () => {
    const tried = ["PATH", "/home/u/.cargo/bin"];
    it("the text names the cause, where it looked and the fix, without markdown", () => {
        const t = serverNotFoundText(tried);
        assert.match(t, /^Lane: server not found: /);
        assert.match(t, /looked in PATH, \/home\/u\/\.cargo\/bin/);
        assert.match(t, /cargo install --path server\/cli/);
        assert.match(t, /lane\.server\.path/);
        assert.doesNotMatch(t, /`/);
    });
    it("the Lanes view says it too, with the fixes a click away (not 'Waiting for lane lsp…')", () => {
        const nodes = serverNodes("missing", tried);
        assert.ok(nodes);
        assert.deepEqual(
            nodes.map((n) => [n.label, n.command]),
            [
                ["Server not found: no lane binary", undefined],
                ["Looked in PATH, /home/u/.cargo/bin", undefined],
                ["Set Lane › Server: Path (lane.server.path)…", "lane.openServerSettings"],
                ["Install: cargo install --path server/cli", "lane.openReadme"],
                ["Look again", "lane.restartServer"],
            ],
        );
    });
    it("a stopped server offers a restart; a running one shows lanes", () => {
        assert.equal(serverNodes("failed", [])?.[0].command, "lane.restartServer");
        assert.equal(serverNodes("running", []), undefined);
        assert.equal(serverNodes("starting", []), undefined);
    });
});
