// The "Lanes" view: lanes → services → instances, built by `treeModel.buildTree` from the pushed
// status. Inline actions (package.json `view/item/context`) act on the node's lane.

import * as vscode from "vscode";

import type { Ctx } from "./ctx";
import { historyEntryNodes, historyErrorNode } from "./historyModel";
import { withDataNodes } from "./dataModel";
import { LaneData } from "./laneData";
import { CONTEXT, type TreeNode, buildTree, serverNodes } from "./treeModel";

export class LanesTree implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
    private readonly changed = new vscode.EventEmitter<void>();
    readonly onDidChangeTreeData = this.changed.event;
    private readonly sub: vscode.Disposable;

    private readonly data: LaneData;

    constructor(private readonly ctx: Ctx) {
        this.data = new LaneData(ctx, () => this.changed.fire(), (line) => ctx.outputChannel.appendLine(line));
        this.sub = ctx.onStatus(() => {
            this.data.update(ctx.status);
            this.changed.fire();
        });
    }

    /** Asks `lane.data.ls` again (a lane's data changed size). */
    reloadData(): void {
        this.data.reload(this.ctx.status);
    }

    getChildren(node?: TreeNode): TreeNode[] | Promise<TreeNode[]> {
        if (node?.kind === "history" && node.lazy && node.lane) return this.history(node.lane);
        if (node) return node.children;
        return (
            serverNodes(this.ctx.serverState, this.ctx.missingTried) ??
            withDataNodes(buildTree(this.ctx.status), this.data.rows)
        );
    }

    getTreeItem(node: TreeNode): vscode.TreeItem {
        const state =
            node.children.length === 0 && !node.lazy
                ? vscode.TreeItemCollapsibleState.None
                : node.active || node.kind === "service"
                  ? vscode.TreeItemCollapsibleState.Expanded
                  : vscode.TreeItemCollapsibleState.Collapsed;
        const item = new vscode.TreeItem(node.label, state);
        item.id = node.id;
        item.description = node.description;
        item.tooltip = node.tooltip;
        item.contextValue = node.contextValue ?? CONTEXT[node.kind];
        if (node.command) item.command = { title: node.label, command: node.command };
        item.iconPath = new vscode.ThemeIcon(node.icon, node.iconColor ? new vscode.ThemeColor(node.iconColor) : undefined);
        return item;
    }

    /** A lane's history from `lane/history`, newest first (fetched again on every refresh). */
    private async history(lane: string): Promise<TreeNode[]> {
        try {
            return historyEntryNodes(lane, await this.ctx.history(lane));
        } catch (e) {
            return [historyErrorNode(lane, e instanceof Error ? e.message : String(e))];
        }
    }

    dispose(): void {
        this.sub.dispose();
        this.changed.dispose();
    }
}
