// The Lanes view's data actions on a lane's "Data" node (and a binding under it): export to a
// file, import from one, back up, restore a backup. Each calls the server's `lane.data.*`
// command; the server reports work-done progress, shown as a notification with Cancel
// (progress.ts). Texts and choices are in dataOps.ts.

import * as path from "node:path";
import * as vscode from "vscode";

import { type Cmd, pickLane, report } from "./commands";
import type { Ctx } from "./ctx";
import { type DataTarget, backupPicks, dataTarget, exportFileName, replaceConfirmText, transferText } from "./dataOps";
import { plain, toUserError } from "./errors";
import { BASELINE, Commands, type DataTransferResult } from "./lsp_ext";
import type { TreeNode } from "./treeModel";

/** `dataChanged`: a lane's data changed (the Data node's sizes are asked again). */
type Factory = (ctx: Ctx, dataChanged?: () => void) => Cmd;

/** The node's lane (and binding), else the lane the user picks. */
async function target(ctx: Ctx, node: unknown, title: string): Promise<DataTarget | undefined> {
    const t = dataTarget(node as Partial<TreeNode> | undefined);
    if (t) return t.lane === BASELINE ? undefined : t;
    const picked = await pickLane(ctx, title);
    return picked ? { lane: picked.lane, binding: null } : undefined;
}

/** Runs a replacing command, asking again with `force` when the lane is another developer's. */
async function replacing(run: (force: boolean) => Promise<DataTransferResult>): Promise<DataTransferResult | undefined> {
    try {
        return await run(false);
    } catch (e) {
        const u = toUserError(e);
        if (u.code !== "not_owner") throw e;
        const force = await vscode.window.showWarningMessage(`${plain(u.message)} Replace anyway?`, { modal: true }, "Force");
        if (force !== "Force") return undefined;
        return run(true);
    }
}

function defaultDir(): vscode.Uri | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri;
}

export const exportData: Factory = (ctx) => (node) =>
    report(ctx, "Export Data", async () => {
        const t = await target(ctx, node, "Export the data of which lane?");
        if (!t) return;
        const dir = defaultDir();
        const name = exportFileName(t, new Date());
        const uri = await vscode.window.showSaveDialog({
            title: `Export ${t.binding ? `binding ${t.binding} of ` : ""}lane ${t.lane}'s data`,
            defaultUri: dir ? vscode.Uri.joinPath(dir, name) : vscode.Uri.file(path.join(process.cwd(), name)),
            filters: { "Lane data": ["lanedata"] },
            saveLabel: "Export",
        });
        if (!uri) return;
        const r = await ctx.exec(Commands.dataExport, { lane: t.lane, binding: t.binding, path: uri.fsPath, folder: null });
        void vscode.window.showInformationMessage(transferText("exported", r));
    });

export const importData: Factory = (ctx, dataChanged) => (node) =>
    report(ctx, "Import Data", async () => {
        const t = await target(ctx, node, "Import data into which lane?");
        if (!t) return;
        const picked = await vscode.window.showOpenDialog({
            title: `Import into ${t.binding ? `binding ${t.binding} of ` : ""}lane ${t.lane}`,
            defaultUri: defaultDir(),
            canSelectMany: false,
            filters: { "Lane data": ["lanedata"], "All files": ["*"] },
            openLabel: "Import",
        });
        const file = picked?.[0];
        if (!file) return;
        const ok = await vscode.window.showWarningMessage(replaceConfirmText(t, path.basename(file.fsPath)), { modal: true }, "Replace");
        if (ok !== "Replace") return;
        const r = await replacing((force) =>
            ctx.exec(Commands.dataImport, { lane: t.lane, binding: t.binding, path: file.fsPath, force, folder: null }),
        );
        dataChanged?.();
        if (r) void vscode.window.showInformationMessage(transferText("imported", r));
    });

export const backupData: Factory = (ctx) => (node) =>
    report(ctx, "Back Up Data", async () => {
        const t = await target(ctx, node, "Back up the data of which lane?");
        if (!t) return;
        const r = await ctx.exec(Commands.dataBackup, { lane: t.lane, folder: null });
        void vscode.window.showInformationMessage(transferText("backed up", r));
    });

export const restoreData: Factory = (ctx, dataChanged) => (node) =>
    report(ctx, "Restore Data", async () => {
        const t = await target(ctx, node, "Restore the data of which lane?");
        if (!t) return;
        const picks = backupPicks(await ctx.exec(Commands.dataBackups, { lane: t.lane }), t.lane);
        if (picks.length === 0) {
            const choice = await vscode.window.showInformationMessage(`Lane: lane ${t.lane} has no backups yet.`, "Back Up Now");
            if (choice === "Back Up Now") await vscode.commands.executeCommand("lane.backupData", node);
            return;
        }
        const picked = await vscode.window.showQuickPick(picks, { title: `Restore lane ${t.lane}'s data from…`, matchOnDetail: true });
        if (!picked) return;
        const ok = await vscode.window.showWarningMessage(
            replaceConfirmText({ lane: t.lane, binding: null }, `the backup of ${picked.label.replace("$(history) ", "")}`),
            { modal: true },
            "Restore",
        );
        if (ok !== "Restore") return;
        const r = await replacing((force) => ctx.exec(Commands.dataRestore, { lane: t.lane, backup: picked.name, force, folder: null }));
        dataChanged?.();
        if (r) void vscode.window.showInformationMessage(transferText("restored", r));
    });
