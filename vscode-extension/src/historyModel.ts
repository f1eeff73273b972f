// The "History" node of each lane in the Lanes view: its entries come from `lane/history` when the
// node is expanded (see `tree.ts`). Pure data, no `vscode` import.

import type { HistoryEntryInfo } from "./lsp_ext";
import type { TreeNode } from "./treeModel";

const EVENT_ICON: Record<string, string> = {
    create: "add",
    deploy: "cloud-upload",
    assign: "arrow-swap",
    switch: "debug-stackframe",
    extend: "watch",
    delete: "trash",
    reclaim: "trash",
};

/** The collapsed "History" node of lane `lane`; its children are fetched when it is expanded. */
export function historyNode(lane: string): TreeNode {
    return {
        id: `lane:${lane}/history`,
        kind: "history",
        label: "History",
        tooltip: `Every change to lane ${lane}: who made it and why (lane history ${lane})`,
        icon: "history",
        lane,
        lazy: true,
        children: [],
    };
}

/** `2026-11-30 14:05:09 UTC`. */
export function utcText(epochSecs: number): string {
    return new Date(epochSecs * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** The entries of a lane's history, newest first, one node each. */
export function historyEntryNodes(lane: string, entries: readonly HistoryEntryInfo[]): TreeNode[] {
    if (entries.length === 0) {
        return [{ id: `lane:${lane}/history/empty`, kind: "message", label: "no history yet", icon: "info", lane, children: [] }];
    }
    return entries
        .map((e, i) => {
            const who = e.actor ?? (e.event === "reclaim" ? "lane agent" : "-");
            const service = e.service ? ` · ${e.service}` : "";
            return {
                id: `lane:${lane}/history/${i}`,
                kind: "event" as const,
                label: e.event,
                description: `${utcText(e.at)} · ${who}${service} · ${e.reason}`,
                tooltip: [
                    `${e.event} of lane ${e.lane} at ${utcText(e.at)}`,
                    `owner ${e.owner}`,
                    `by ${who}`,
                    ...(e.service ? [`service ${e.service}`] : []),
                    e.reason,
                ].join("\n"),
                icon: EVENT_ICON[e.event] ?? "circle-outline",
                lane,
                service: e.service ?? undefined,
                children: [],
            };
        })
        .reverse();
}

/** The node shown when the history cannot be read. */
export function historyErrorNode(lane: string, message: string): TreeNode {
    return { id: `lane:${lane}/history/error`, kind: "message", label: `history unavailable: ${message}`, icon: "error", lane, children: [] };
}
