// Shows a `lane/agentRestarted` from the server: in the status bar for a while, and as a warning
// when the agent could not be started again.

import * as vscode from "vscode";

import { AGENT_RESTART_SHOWN_MS, agentRestartText } from "./agentRestartText";
import type { AgentRestartInfo } from "./lsp_ext";

export function showAgentRestarted(r: AgentRestartInfo, output: vscode.OutputChannel): void {
    const text = agentRestartText(r);
    output.appendLine(`lane: ${r.message}${r.error === null ? "" : `: ${r.error}`}`);
    vscode.window.setStatusBarMessage(text.statusBar, AGENT_RESTART_SHOWN_MS);
    if (text.warning !== null) void vscode.window.showWarningMessage(text.warning);
}
