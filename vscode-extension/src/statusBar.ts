// The status-bar lane indicator: `$(git-merge) feature-x · feat/login · 3/3 healthy`. Renders `ctx.status`
// only; it never asks the server itself. A click opens Switch Traffic.

import * as vscode from "vscode";

import type { Ctx } from "./ctx";
import { serverNotFoundText } from "./locate";
import { mergedLaneOf, mergedStatusText, mergedTooltip, mergedWarns } from "./merged";
import { statusBarText, statusBarTooltip, statusBarWarns } from "./summary";

export function createStatusBar(ctx: Ctx): vscode.Disposable {
    const item = vscode.window.createStatusBarItem("lane.indicator", vscode.StatusBarAlignment.Left, 10);
    item.name = "Lane";
    const render = (): void => {
        // The service of the file being edited (a monorepo has several), else of the first folder.
        const editing = vscode.window.activeTextEditor?.document.uri;
        const folder =
            editing?.scheme === "file" ? editing.fsPath : vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        switch (ctx.serverState) {
            case "missing":
                item.text = "$(error) lane: not found";
                item.tooltip = `${serverNotFoundText(ctx.missingTried)} Click to set the path.`;
                item.command = "lane.openServerSettings";
                item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
                break;
            case "failed":
                item.text = "$(error) lane: stopped";
                item.tooltip = "`lane lsp` stopped. Click to restart it; its log is in the Lane output.";
                item.command = "lane.restartServer";
                item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
                break;
            default: {
                const status = ctx.status;
                // The current branch's lane, when it is merged and goes on its own.
                const merged = mergedLaneOf(status, folder);
                item.text =
                    status === undefined ? "$(sync~spin) lane" : statusBarText(status, folder) + mergedStatusText(merged);
                const proxy = ctx.proxyState;
                const proxyLine = proxy.running
                    ? `Lane proxy: running on ${proxy.listen} (requests sent with HTTP\\_PROXY follow the active lane)`
                    : "Lane proxy: not running (only requests copied from Lane carry the lane; run Lane: Start Proxy)";
                const mergedLine = mergedTooltip(merged, Date.now() / 1000);
                const md = new vscode.MarkdownString(
                    `${statusBarTooltip(status, folder)}\n\n${mergedLine ? `${mergedLine}\n\n` : ""}${proxyLine}`,
                );
                md.supportThemeIcons = true;
                item.tooltip = md;
                item.command = "lane.switch";
                item.backgroundColor = statusBarWarns(status) || mergedWarns(merged)
                    ? new vscode.ThemeColor("statusBarItem.warningBackground")
                    : undefined;
            }
        }
        item.show();
    };
    render();
    const sub = ctx.onStatus(render);
    const editorSub = vscode.window.onDidChangeActiveTextEditor(render);
    return vscode.Disposable.from(item, sub, editorSub);
}
