// Lanes end with their branch: what the status bar says when the current branch's lane is merged
// and about to be reclaimed. Pure functions (no `vscode` import), called by `statusBar.ts`.

import type { LaneInfo, LaneStatus } from "./lsp_ext";
import { formatDuration, pickWorkspace } from "./summary";

/**
 * The merged lane the developer is working on: among the lanes marked merged, the active one if it
 * is, else one holding a version of the current branch (of the workspace `folder` is in).
 */
export function mergedLaneOf(status: LaneStatus | undefined, folder?: string): LaneInfo | undefined {
    if (status === undefined || status.backendError) return undefined;
    const merged = status.lanes.filter((l) => l.merged);
    const active = merged.find((l) => l.id === status.activeLane);
    if (active) return active;
    const branch = pickWorkspace(status, folder)?.branch;
    if (!branch) return undefined;
    return merged.find((l) => l.services.some((s) => s.branch === branch));
}

/** `14:05`: a time of day in the local zone (an absolute time does not go stale between pushes). */
export function clockText(epochSecs: number): string {
    const d = new Date(epochSecs * 1000);
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/** The status-bar suffix: ` · $(warning) feature-x merged, goes at 14:05`, or `kept` after `lane extend`. */
export function mergedStatusText(lane: LaneInfo | undefined): string {
    const m = lane?.merged;
    if (!lane || !m) return "";
    if (m.reclaimAt === null) return ` · $(git-pull-request-closed) ${lane.id} merged (kept)`;
    return ` · $(warning) ${lane.id} merged, goes at ${clockText(m.reclaimAt)}`;
}

/** The tooltip paragraph: why the lane is merged, when it goes, and how to keep it. */
export function mergedTooltip(lane: LaneInfo | undefined, nowSecs: number): string {
    const m = lane?.merged;
    if (!lane || !m) return "";
    if (m.reclaimAt === null) {
        return `**Lane ${lane.id} is merged** into ${m.target} (${m.reason}); kept by Extend Lane: it lives until its TTL.`;
    }
    const left = Math.max(0, m.reclaimAt - nowSecs);
    return (
        `**Lane ${lane.id} is merged** into ${m.target} (${m.reason}): it is reclaimed at ${clockText(m.reclaimAt)} ` +
        `(in ${formatDuration(left)}) unless you run Extend Lane on it.`
    );
}

/** Whether the status bar should warn: the lane goes on its own soon. */
export function mergedWarns(lane: LaneInfo | undefined): boolean {
    return lane?.merged?.reclaimAt !== null && lane?.merged?.reclaimAt !== undefined;
}

/** The lane row's note in the Lanes view: `merged, goes at 14:05` or `merged (kept)`. */
export function mergedLaneText(lane: LaneInfo): string {
    const m = lane.merged;
    if (!m) return "";
    return m.reclaimAt === null ? "merged (kept)" : `merged, goes at ${clockText(m.reclaimAt)}`;
}
