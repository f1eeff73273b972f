// Entry point: builds the context, registers the commands, the status bar and the lanes view, and
// starts `lane lsp`. Everything the extension shows comes from the server.

import * as vscode from "vscode";

import * as commands from "./commands";
import { Config } from "./config";
import { Ctx } from "./ctx";
import { createStatusBar } from "./statusBar";
import { LanesTree } from "./tree";

let ctx: Ctx | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const c = new Ctx(context);
    ctx = c;
    context.subscriptions.push(c);
    const register = (id: string, factory: (ctx: Ctx) => commands.Cmd): void => {
        context.subscriptions.push(vscode.commands.registerCommand(id, factory(c)));
    };
    register("lane.showStatus", commands.showStatus);
    register("lane.deploy", commands.deploy);
    register("lane.switch", commands.switchTraffic);
    register("lane.createLane", commands.createLane);
    register("lane.deleteLane", commands.deleteLane);
    register("lane.extendLane", commands.extendLane);
    register("lane.assignVersion", commands.assignVersion);
    register("lane.copyRequest", commands.copyRequest);
    register("lane.refresh", commands.refresh);
    register("lane.restartServer", commands.restartServer);
    register("lane.showLogs", commands.showLogs);
    register("lane.tree.switchTo", commands.switchToNode);

    const tree = new LanesTree(c);
    context.subscriptions.push(
        tree,
        vscode.window.registerTreeDataProvider("lane.lanes", tree),
        createStatusBar(c),
        vscode.workspace.onDidChangeConfiguration((e) => {
            if (Config.needsRestart(e)) void c.restart();
        }),
    );
    await c.start();
}

export async function deactivate(): Promise<void> {
    await ctx?.stop();
    ctx = undefined;
}
