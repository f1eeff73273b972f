// Finds the server binary (see locate.ts for the order) or tells the user how to get one. Never
// waits for the user: activation must finish whether or not the popup is answered.

import * as os from "node:os";
import * as vscode from "vscode";

import type { Config } from "./config";
import { type LocateResult, locateServer, serverNotFoundText } from "./locate";

export function locate(config: Config): LocateResult {
    return locateServer({
        env: process.env["LANE_SERVER_PATH"],
        setting: config.serverPath,
        pathVar: process.env["PATH"],
        cargoHome: process.env["CARGO_HOME"],
        home: os.homedir(),
    });
}

/** The "server not found" popup with its fixes. Returns at once; the buttons act when clicked. */
export function showServerNotFound(tried: readonly string[]): void {
    const readme = "Open README";
    const settings = "Open Settings";
    void vscode.window.showErrorMessage(serverNotFoundText(tried), readme, settings).then(async (choice) => {
        if (choice === readme) await vscode.commands.executeCommand("lane.openReadme");
        else if (choice === settings) await vscode.commands.executeCommand("lane.openServerSettings");
    });
}
