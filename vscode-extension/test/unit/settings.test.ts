// Where the "server not found" buttons lead (issue 14, item 2).

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

import { SERVER_PATH_SETTING, findReadme, settingsCommand } from "../../src/settings";

// out/test/unit/ → vscode-extension/
const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8")) as {
    contributes: { configuration: { properties: Record<string, { type: unknown; default: unknown; scope?: string }> } };
};

describe("Open README", () => {
    it("finds the README the vsix ships (readme.md) on a case-sensitive file system", () => {
        assert.equal(findReadme(["package.json", "readme.md", "dist"]), "readme.md");
        assert.equal(findReadme(["README.md"]), "README.md");
        assert.equal(findReadme(["package.json"]), undefined);
    });
});

describe("Open Settings", () => {
    it("opens the Remote tab when the extension runs remotely, else the User tab", () => {
        assert.equal(settingsCommand("ssh-remote"), "workbench.action.openRemoteSettings");
        assert.equal(settingsCommand(undefined), "workbench.action.openSettings");
    });
    it("lane.server.path is a plain string, editable in the settings UI in every tab", () => {
        const p = pkg.contributes.configuration.properties[SERVER_PATH_SETTING];
        assert.ok(p, "the setting is declared");
        // `["string","null"]` has no editor in the settings UI ("Edit in settings.json" only).
        assert.equal(p.type, "string");
        assert.equal(p.default, "");
        // `machine`/`machine-overridable` settings are hidden from the User tab of a remote window
        // ("No Settings Found"); `window` shows in User, Remote and Workspace.
        assert.equal(p.scope, "window");
    });
});
