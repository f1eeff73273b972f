// Typed access to the `lane.*` settings (declared in package.json `contributes.configuration`).

import * as vscode from "vscode";

export const SECTION = "lane";

export type TraceLevel = "off" | "messages" | "verbose";

export class Config {
    private get cfg(): vscode.WorkspaceConfiguration {
        return vscode.workspace.getConfiguration(SECTION);
    }

    /** `lane.server.path`. In an untrusted workspace VS Code returns only the user's value. */
    get serverPath(): string | undefined {
        const p = this.cfg.get<string | null>("server.path");
        return p ? p : undefined;
    }

    /** `lane.server.extraEnv`: extra environment for `lane lsp`. */
    get serverExtraEnv(): Record<string, string> {
        return this.cfg.get<Record<string, string>>("server.extraEnv") ?? {};
    }

    /** `lane.laneHeader`: overrides the header the server reports in copied requests. */
    get laneHeader(): string | undefined {
        const h = this.cfg.get<string | null>("laneHeader");
        return h ? h : undefined;
    }

    /** `lane.trace.server`; the language client reads it itself, this is for display. */
    get traceServer(): TraceLevel {
        return this.cfg.get<TraceLevel>("trace.server") ?? "off";
    }

    /** Whether a change needs the server restarted. */
    static needsRestart(e: vscode.ConfigurationChangeEvent): boolean {
        return e.affectsConfiguration(`${SECTION}.server`);
    }
}
