// Where the extension sends the user to fix their setup. Pure; no `vscode` import.

export const SERVER_PATH_SETTING = "lane.server.path";

/** The README among an extension directory's file names, whatever its case (`vsce` writes
 * `readme.md`; Linux file systems are case-sensitive). */
export function findReadme(names: readonly string[]): string | undefined {
    return names.find((n) => n.toLowerCase() === "readme.md");
}

/** The settings command for the scope `lane.server.path` belongs in: the remote machine's settings
 * when VS Code runs the extension remotely (`vscode.env.remoteName` set), else the user's. */
export function settingsCommand(remoteName: string | undefined): string {
    return remoteName ? "workbench.action.openRemoteSettings" : "workbench.action.openSettings";
}
