// Pure functions that turn a `LaneStatus` into what the status bar shows. No `vscode` import: the
// unit tests run this module in plain node. The server computes health and traffic; this only
// formats them.

import { driftParagraph } from "./drift";
import { BASELINE, type LaneInfo, type LaneStatus, type ServiceInfo, type WorkspaceInfo } from "./lsp_ext";

/** The codicon that starts the status-bar text: the activity bar's icon. A character such as
 * U+26D9 renders as an empty box where the fonts lack it (common on Linux); codicons ship with
 * VS Code. */
export const LANE_GLYPH = "$(git-merge)";

export interface Health {
    healthy: number;
    total: number;
}

export function health(instances: readonly ServiceInfo[]): Health {
    return { healthy: instances.filter((i) => i.state === "healthy").length, total: instances.length };
}

export function healthText(h: Health): string {
    return `${h.healthy}/${h.total} healthy`;
}

export function findLane(status: LaneStatus, id: string): LaneInfo | undefined {
    return status.lanes.find((l) => l.id === id);
}

/** The instances that serve lane `id` itself (`baseline`: the baseline instances). */
export function laneInstances(status: LaneStatus, id: string): ServiceInfo[] {
    if (id === BASELINE) return status.baseline;
    return findLane(status, id)?.services ?? [];
}

/** Requests per minute, summed over instances. */
export function perMinute(instances: readonly ServiceInfo[]): number {
    return instances.reduce((sum, i) => sum + i.requestsPerMinute, 0);
}

/**
 * The service the status bar talks about: the one whose folder holds `path` (the file being edited,
 * or a workspace folder; the innermost folder wins, as a monorepo's services sit below its root),
 * else the first.
 */
export function pickWorkspace(status: LaneStatus, path?: string): WorkspaceInfo | undefined {
    const holds = (folder: string): boolean =>
        path !== undefined && (path === folder || path.startsWith(folder.endsWith("/") ? folder : `${folder}/`));
    let best: WorkspaceInfo | undefined;
    for (const w of status.workspaces) {
        if (holds(w.folder) && (best === undefined || w.folder.length > best.folder.length)) best = w;
    }
    return best ?? status.workspaces[0];
}

/** `5h 12m`, `3d 4h`, `45s`: at most the two largest units. */
export function formatDuration(secs: number): string {
    let rest = Math.max(0, Math.floor(secs));
    const parts: string[] = [];
    for (const [name, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
        const n = Math.floor(rest / size);
        rest -= n * size;
        if (n > 0) parts.push(`${n}${name}`);
        else if (parts.length > 0) break;
        if (parts.length === 2) break;
    }
    return parts.length > 0 ? parts.join(" ") : "0s";
}

/** `expires in 5h 12m` or `expired`. */
export function expiryText(lane: LaneInfo): string {
    return lane.expiresInSecs > 0 ? `expires in ${formatDuration(lane.expiresInSecs)}` : "expired";
}

/**
 * The status-bar text: `$(git-merge) feature-x · feat/login · 3/3 healthy`. The branch is left out outside a
 * git repository, the health when the active lane runs nothing.
 */
export function statusBarText(status: LaneStatus | undefined, folder?: string): string {
    if (status === undefined) return `${LANE_GLYPH} lane…`;
    if (status.backendError) return `${LANE_GLYPH} lane: ${status.backendError.code}`;
    const parts = [`${LANE_GLYPH} ${status.activeLane}`];
    const branch = pickWorkspace(status, folder)?.branch;
    if (branch) parts.push(branch);
    if (status.total > 0) parts.push(healthText(status));
    return parts.join(" · ");
}

/** Whether the status bar should warn: the backend is unreachable or an instance is unhealthy. */
export function statusBarWarns(status: LaneStatus | undefined): boolean {
    if (status === undefined) return false;
    return status.backendError !== null || status.healthy < status.total;
}

/** The tooltip as Markdown: workspace, active lane with its chain, services, health and traffic. */
export function statusBarTooltip(status: LaneStatus | undefined, folder?: string): string {
    if (status === undefined) return "Waiting for `lane lsp`…";
    const paragraphs: string[] = [];
    if (status.backendError) {
        const e = status.backendError;
        paragraphs.push(`**lane is unavailable** (${e.code}): ${escapeMd(e.message)}`);
        if (e.help) paragraphs.push(escapeMd(e.help));
        return paragraphs.join("\n\n");
    }
    const ws = pickWorkspace(status, folder);
    if (ws) {
        const commit = ws.commit ? ` (${ws.commit.slice(0, 8)})` : "";
        const at = ws.branch ? ` on \`${ws.branch}\`${commit}` : "";
        if (ws.service) paragraphs.push(`Service \`${ws.service}\`${at}`);
        else if (ws.error) paragraphs.push(`\`lane.toml\`: ${escapeMd(ws.error)}`);
    }
    const active = status.activeLane;
    const lane = findLane(status, active);
    if (active === BASELINE) {
        paragraphs.push("Your requests enter **baseline** (no lane header).");
    } else if (lane) {
        const chain = lane.chain.slice(1).map((c) => ` → ${c}`).join("");
        paragraphs.push(`Your requests enter lane **${active}**${chain} → baseline`);
        paragraphs.push(`Owner ${escapeMd(lane.owner)}, ${expiryText(lane)}`);
    } else {
        paragraphs.push(`Your requests enter lane **${active}**, which does not exist (any more).`);
    }
    const instances = laneInstances(status, active);
    if (instances.length > 0) {
        const rows = ["| service | version | health | req/min |", "| --- | --- | --- | ---: |"];
        for (const i of instances) {
            rows.push(`| ${i.service} | ${escapeMd(i.version ?? "baseline")} | ${i.state} | ${i.requestsPerMinute} |`);
        }
        paragraphs.push(rows.join("\n"));
        paragraphs.push(`${healthText(status)}, ${perMinute(instances)} req/min`);
    }
    const drift = driftParagraph(status);
    if (drift) paragraphs.push(drift);
    const router = status.router ?? "not running";
    paragraphs.push(`${status.lanes.length} lane(s) · router ${router} · backend ${status.backend}`);
    paragraphs.push("Click to switch traffic.");
    return paragraphs.join("\n\n");
}

export function escapeMd(s: string): string {
    return s.replace(/([\\`*_{}[\]()#+\-.!|<>])/g, "\\$1");
}

/** Columns padded to their widest cell, two spaces apart. */
function table(rows: readonly string[][]): string[] {
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
    return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ").trimEnd());
}

/** The status as plain text for the Output panel (which shows no markdown): what the hover says. */
export function statusPlainText(status: LaneStatus, folder?: string): string {
    const lines: string[] = [];
    if (status.backendError) {
        const e = status.backendError;
        lines.push(`lane is unavailable (${e.code}): ${e.message}`);
        if (e.help) lines.push(e.help);
        return lines.join("\n");
    }
    const ws = pickWorkspace(status, folder);
    if (ws?.service) {
        const at = ws.branch ? ` on branch ${ws.branch}${ws.commit ? ` (${ws.commit.slice(0, 8)})` : ""}` : "";
        lines.push(`Service ${ws.service}${at}`);
    } else if (ws?.error) {
        lines.push(`lane.toml: ${ws.error}`);
    }
    const active = status.activeLane;
    const lane = findLane(status, active);
    if (active === BASELINE) lines.push("Your requests enter baseline (no lane header).");
    else if (lane) {
        lines.push(`Your requests enter lane ${active}${lane.chain.slice(1).map((c) => ` → ${c}`).join("")} → baseline`);
        lines.push(`Owner ${lane.owner}, ${expiryText(lane)}`);
    } else lines.push(`Your requests enter lane ${active}, which does not exist (any more).`);
    const instances = laneInstances(status, active);
    if (instances.length > 0) {
        lines.push("");
        const rows = [["service", "version", "health", "req/min"]];
        for (const i of instances) rows.push([i.service, i.version ?? "baseline", i.state, String(i.requestsPerMinute)]);
        lines.push(...table(rows));
        lines.push("");
        lines.push(`${healthText(status)}, ${perMinute(instances)} req/min`);
    }
    for (const f of status.deployFailures ?? []) {
        lines.push(`Last deploy of ${f.service} into ${f.lane} failed: ${f.error.message.split("\n")[0]}`);
    }
    lines.push(`${status.lanes.length} lane(s) · router ${status.router ?? "not running"} · backend ${status.backend}`);
    return lines.join("\n");
}
