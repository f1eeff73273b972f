// The items of the lane quick picks. Pure; `commands.ts` shows them.

import { BASELINE, type LaneInfo } from "./lsp_ext";
import { expiryText, health, healthText } from "./summary";

export interface LanePick {
    label: string;
    description?: string;
    detail?: string;
    /** The lane id; undefined for "New lane…". */
    lane?: string;
    isNew?: boolean;
}

export interface PickOptions {
    activeLane: string;
    includeBaseline?: boolean;
    includeNew?: boolean;
    /** A new lane to propose first (e.g. named after the branch), unless it exists. */
    suggestNew?: { lane: string; why: string };
}

/** A lane id from a branch name: `feature/login` → `feature-login` (lowercase, runs of other
 * characters → `-`, at most 40 characters); undefined when nothing usable is left. */
export function laneNameFromBranch(branch: string | null | undefined): string | undefined {
    if (!branch || branch === "HEAD") return undefined;
    const id = branch
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, "-")
        .replace(/^-+|-+$/g, "")
        .slice(0, 40)
        .replace(/-+$/, "");
    return id.length > 0 && id !== BASELINE ? id : undefined;
}

/** The active lane first, then the others by id; `baseline` and "New lane…" when asked for. */
export function lanePicks(lanes: readonly LaneInfo[], o: PickOptions): LanePick[] {
    const sorted = [...lanes].sort((a, b) => {
        if (a.id === o.activeLane) return -1;
        if (b.id === o.activeLane) return 1;
        return a.id.localeCompare(b.id);
    });
    const picks: LanePick[] = sorted.map((l) => {
        const h = health(l.services);
        const parts = [l.id === o.activeLane ? "active" : undefined, h.total > 0 ? healthText(h) : "empty", expiryText(l)];
        const services = [...new Set(l.services.map((s) => `${s.service} ${s.version ?? ""}`.trim()))];
        return {
            label: `$(${l.id === o.activeLane ? "debug-stackframe" : "git-merge"}) ${l.id}`,
            description: parts.filter((p) => p !== undefined).join(" · "),
            detail: services.length > 0 ? services.join(", ") : `owner ${l.owner}`,
            lane: l.id,
        };
    });
    if (o.includeBaseline) {
        picks.push({
            label: `$(home) ${BASELINE}`,
            description: o.activeLane === BASELINE ? "active · no lane header" : "no lane header",
            lane: BASELINE,
        });
    }
    if (o.includeNew) picks.push({ label: "$(add) New lane…", isNew: true });
    const suggested = o.suggestNew;
    if (suggested && !lanes.some((l) => l.id === suggested.lane)) {
        picks.unshift({ label: `$(add) New lane ${suggested.lane}`, description: suggested.why, lane: suggested.lane, isNew: true });
    }
    return picks;
}
