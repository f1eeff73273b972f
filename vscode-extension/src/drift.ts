// Baseline drift: how each baseline service that follows production stands against it (the
// status's `baselineSync`), for the Lanes view's baseline rows and the status-bar tooltip. Kept
// apart so the tree and summary only call in.

import type { BaselineSyncInfo, LaneStatus } from "./lsp_ext";
import type { TreeNode } from "./treeModel";

/** Markdown-escaped (as `summary.ts` escapes; repeated so neither module imports the other). */
function escapeMd(s: string): string {
    return s.replace(/([\\`*_{}[\]()#+\-.!|<>])/g, "\\$1");
}

/** The followed-production entry of `service`, when it follows production. */
export function driftOf(status: LaneStatus, service: string): BaselineSyncInfo | undefined {
    return (status.baselineSync ?? []).find((b) => b.service === service);
}

/** A version as people read it: a commit's first 8 characters, an image as it is. */
function shortVersion(v: string | null): string {
    if (v === null) return "nothing";
    return /^[0-9a-f]{40}$/.test(v) ? v.slice(0, 8) : v;
}

/** `build failed` for `build_failed`. */
export function driftLabel(b: BaselineSyncInfo): string {
    return b.drift === "in_sync" ? "in sync" : b.drift.replace(/_/g, " ");
}

/** One line: `follows origin/main: in sync at 1a2b3c4d`, or what runs against what production runs. */
export function driftText(b: BaselineSyncInfo): string {
    const head = `follows ${b.follows}: ${driftLabel(b)}`;
    if (b.drift === "in_sync") return `${head} at ${shortVersion(b.running)}`;
    return `${head} (runs ${shortVersion(b.running)}, production ${shortVersion(b.production)})`;
}

/** The baseline service row with its drift: said in the description, the reason in the tooltip. */
export function withDrift(node: TreeNode, status: LaneStatus): TreeNode {
    const b = node.service ? driftOf(status, node.service) : undefined;
    if (!b) return node;
    const drifting = b.drift !== "in_sync";
    const tooltip = [node.tooltip ?? node.label, driftText(b), b.reason ?? ""].filter((l) => l.length > 0).join("\n");
    return {
        ...node,
        description: [node.description, driftText(b)].filter((d) => d).join(" · "),
        tooltip,
        icon: drifting ? "warning" : node.icon,
        iconColor: drifting ? "problemsWarningIcon.foreground" : node.iconColor,
    };
}

/** The tooltip paragraph on baseline drift: every service not in sync, with why; none when all are. */
export function driftParagraph(status: LaneStatus): string | undefined {
    const drifting = (status.baselineSync ?? []).filter((b) => b.drift !== "in_sync");
    if (drifting.length === 0) return undefined;
    const lines = drifting.map((b) => {
        const why = b.reason ? `: ${escapeMd(b.reason.split("\n")[0])}` : "";
        return `- \`${b.service}\` ${escapeMd(driftText(b))}${why}`;
    });
    return [`**Baseline drifts from production**`, ...lines].join("\n");
}
