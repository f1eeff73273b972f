// Entry point: builds the context, registers the commands, the status bar and the lanes view, and
// starts `lane lsp`. Everything the extension shows comes from the server.

import * as vscode from "vscode";

import * as commands from "./commands";
import * as dataCommands from "./dataCommands";
import { showServerNotFound } from "./bootstrap";
import { Config } from "./config";
import { Ctx } from "./ctx";
import { createStatusBar } from "./statusBar";
import { LanesTree } from "./tree";

let ctx: Ctx | undefined;

/** Commands that work without a server (they help to find or restart it). */
const WITHOUT_SERVER = new Set(["lane.restartServer", "lane.showLogs", "lane.openReadme", "lane.openServerSettings"]);

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const c = new Ctx(context);
    ctx = c;
    context.subscriptions.push(c);
    // Every command first waits for the server's start to finish (a command run during activation
    // must not fail for a server that is about to answer); while no server was found, each says so
    // with the fix instead of failing for some other reason.
    const register = (id: string, factory: (ctx: Ctx) => commands.Cmd): void => {
        const handler = factory(c);
        const needsServer = !WITHOUT_SERVER.has(id);
        context.subscriptions.push(
            vscode.commands.registerCommand(id, async (...args: unknown[]) => {
                await c.started();
                if (needsServer && c.serverState === "missing") {
                    showServerNotFound(c.missingTried);
                    return;
                }
                await handler(...args);
            }),
        );
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
    register("lane.tree.deployHere", commands.deploy);
    register("lane.tree.copyRequest", commands.copyRequest);
    register("lane.tree.showServiceLogs", commands.showServiceLogs);
    register("lane.openReadme", commands.openReadme);
    register("lane.startProxy", commands.startProxy);
    register("lane.stopProxy", commands.stopProxy);
    register("lane.openServerSettings", commands.openServerSettings);
    register("lane.exportData", dataCommands.exportData);
    // After an import or a restore, the Data node's sizes are asked again.
    const dataChanged = (): void => tree.reloadData();
    register("lane.importData", (ctx) => dataCommands.importData(ctx, dataChanged));
    register("lane.backupData", dataCommands.backupData);
    register("lane.restoreData", (ctx) => dataCommands.restoreData(ctx, dataChanged));

    const tree = new LanesTree(c);
    context.subscriptions.push(
        tree,
        vscode.window.registerTreeDataProvider("lane.lanes", tree),
        createStatusBar(c),
        vscode.workspace.onDidChangeConfiguration((e) => {
            if (Config.needsRestart(e)) void c.restart();
        }),
    );
    // Not awaited by anything the user waits for: the start only locates and spawns the server.
    await c.start();
}

export async function deactivate(): Promise<void> {
    await ctx?.stop();
    ctx = undefined;
}
