// Finds the server binary (see locate.ts for the order) or tells the user how to get one.

import * as os from "node:os";
import * as vscode from "vscode";

import type { Config } from "./config";
import { type Located, locateServer } from "./locate";

export async function bootstrap(context: vscode.ExtensionContext, config: Config): Promise<Located | undefined> {
    const result = locateServer({
        env: process.env["LANE_SERVER_PATH"],
        setting: config.serverPath,
        pathVar: process.env["PATH"],
        home: os.homedir(),
    });
    if (result.ok) return result.located;
    const readme = "Open README";
    const settings = "Open Settings";
    const choice = await vscode.window.showErrorMessage(
        `Lane: could not find the \`lane\` binary (tried ${result.tried.join(", ")}). ` +
            "Install it (`cargo install --path server/cli`) or set `lane.server.path`.",
        readme,
        settings,
    );
    if (choice === readme) {
        const uri = vscode.Uri.joinPath(context.extensionUri, "README.md");
        await vscode.commands.executeCommand("markdown.showPreview", uri);
    } else if (choice === settings) {
        await vscode.commands.executeCommand("workbench.action.openSettings", "lane.server.path");
    }
    return undefined;
}
