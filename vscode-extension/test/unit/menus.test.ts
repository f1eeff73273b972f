// The Lanes view's context menus (issue 14, item 8): every lane and service action on right-click,
// in words a newcomer knows. Reads package.json's `menus` and evaluates their `when` clauses.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

import { CONTEXT, buildTree } from "../../src/treeModel";
import { sampleStatus } from "../fixtures/status";

interface MenuItem {
    command: string;
    when: string;
    group?: string;
}
const root = path.join(__dirname, "..", "..", "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
    contributes: { commands: { command: string; title: string }[]; menus: Record<string, MenuItem[]> };
};
const main = fs.readFileSync(path.join(root, "src", "main.ts"), "utf8");

/** The `when` clauses used here: `a == b`, `a =~ /re/`, joined by `&&`. */
function holds(when: string, ctx: Record<string, string>): boolean {
    return when.split("&&").every((term) => {
        const t = term.trim();
        let m = /^(\S+) == (\S+)$/.exec(t);
        if (m) return ctx[m[1]] === m[2];
        m = /^(\S+) =~ \/(.*)\/$/.exec(t);
        if (m) return new RegExp(m[2]).test(ctx[m[1]] ?? "");
        throw new Error(`unsupported when clause: ${t}`);
    });
}

/** The right-click menu (not the inline icons) of a tree item with `contextValue`. */
function contextMenu(contextValue: string): string[] {
    return pkg.contributes.menus["view/item/context"]
        .filter((m) => !m.group?.startsWith("inline") && holds(m.when, { view: "lane.lanes", viewItem: contextValue }))
        .map((m) => m.command)
        .sort();
}

const title = (id: string): string => pkg.contributes.commands.find((c) => c.command === id)?.title ?? "";

describe("right-click menus of the Lanes view", () => {
    it("a lane: switch, copy request, deploy here, extend, delete", () => {
        assert.deepEqual(contextMenu(CONTEXT.lane), [
            "lane.deleteLane",
            "lane.extendLane",
            "lane.tree.copyRequest",
            "lane.tree.deployHere",
            "lane.tree.switchTo",
        ]);
    });
    it("baseline: switch, copy request", () => {
        assert.deepEqual(contextMenu(CONTEXT.baseline), ["lane.tree.copyRequest", "lane.tree.switchTo"]);
    });
    it("a service in a lane: copy request, redeploy, show logs, move to another lane, switch", () => {
        assert.deepEqual(contextMenu(CONTEXT.service), [
            "lane.assignVersion",
            "lane.tree.copyRequest",
            "lane.tree.deployHere",
            "lane.tree.showServiceLogs",
            "lane.tree.switchTo",
        ]);
    });
    it("a baseline service has no version to move", () => {
        const tree = buildTree(sampleStatus());
        const baselineService = tree.find((n) => n.kind === "baseline")?.children[0];
        assert.equal(baselineService?.contextValue, "lane.baselineService");
        assert.deepEqual(contextMenu("lane.baselineService"), ["lane.tree.copyRequest", "lane.tree.deployHere", "lane.tree.showServiceLogs"]);
    });
    it("a lane's Data node: export, import, back up, restore; a binding: export and import it", () => {
        assert.deepEqual(contextMenu(CONTEXT.data), ["lane.backupData", "lane.exportData", "lane.importData", "lane.restoreData"]);
        assert.deepEqual(contextMenu(CONTEXT.dataBinding), ["lane.exportData", "lane.importData"]);
        assert.equal(title("lane.exportData"), "Export Data…");
        assert.equal(title("lane.restoreData"), "Restore Data…");
    });
    it("every menu command is declared, registered, and titled in plain words", () => {
        for (const m of pkg.contributes.menus["view/item/context"]) {
            assert.ok(title(m.command), `${m.command} is declared`);
            assert.ok(main.includes(`register("${m.command}"`), `${m.command} is registered`);
        }
        assert.equal(title("lane.assignVersion"), "Move Version To Another Lane…");
        assert.doesNotMatch(JSON.stringify(pkg.contributes.commands), /Assign Version/);
    });
});
