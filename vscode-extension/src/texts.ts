// What Extend and Delete say. Pure; no `vscode` import.

import { BASELINE, type DeleteResult, type LaneInfo, type LaneStatus } from "./lsp_ext";
import { expiryText, findLane } from "./summary";

/** `extended feature-x by 30m; it now expires in 3d (Thu, 03 Dec 2026 10:25 UTC)`: the same
 * rounding as the Lanes view, and the exact time. */
export function extendedText(lane: LaneInfo, by: string): string {
    const at = new Date(lane.expiresAt * 1000).toUTCString().replace(/:\d\d GMT$/, " UTC");
    return `Lane: extended ${lane.id} by ${by}; it now ${expiryText(lane)} (${at}).`;
}

/** The delete confirmation: what stops, and where the developer's requests go when it is theirs. */
export function deleteConfirmText(status: LaneStatus | undefined, lane: string): string {
    const info = status ? findLane(status, lane) : undefined;
    const services = [...new Set((info?.services ?? []).map((s) => s.service))].sort();
    const parts = [`Delete lane ${lane}?`];
    parts.push(services.length > 0 ? `Its versions of ${services.join(", ")} stop.` : "It runs no personal version.");
    if (status?.activeLane === lane) parts.push("It is the lane your requests enter: they fall back to baseline.");
    const stacked = (status?.lanes ?? []).filter((l) => l.parent === lane).map((l) => l.id);
    if (stacked.length > 0) parts.push(`Lanes stacked on it: ${stacked.join(", ")}.`);
    return parts.join(" ");
}

/** After a delete: what stopped and where requests go now. */
export function deletedText(r: DeleteResult, wasActive: boolean): string {
    const stopped = r.stopped.length > 0 ? `; stopped ${r.stopped.join(", ")}` : "";
    const traffic = wasActive && r.activeLane === BASELINE ? "; your requests fall back to baseline" : "";
    return `Lane: deleted ${r.deleted}${stopped}${traffic}.`;
}
