// What the extension says when `lane lsp` restarted the local agent (`lane/agentRestarted`). No
// `vscode` import: the unit tests load it in plain node.

import type { AgentRestartInfo } from "./lsp_ext";

/** How long the status bar shows a restart. */
export const AGENT_RESTART_SHOWN_MS = 15_000;

/** The status bar text of a restart, or the warning of a restart that failed. */
export function agentRestartText(r: AgentRestartInfo): { statusBar: string; warning: string | null } {
    if (r.error === null) {
        return { statusBar: `$(debug-restart) ${r.message}`, warning: null };
    }
    return {
        statusBar: `$(warning) ${r.message}`,
        warning: `Lane: ${r.message}: ${r.error}`,
    };
}
