// Builds the "Lanes" tree from a `LaneStatus`: lanes → services → instances. Pure data, no `vscode`
// import; `tree.ts` turns these nodes into `TreeItem`s.

import { BASELINE, type DeployFailure, type LaneInfo, type LaneStatus, type ServiceInfo } from "./lsp_ext";
import { withDrift } from "./drift";
import { historyNode } from "./historyModel";
import { mergedLaneText } from "./merged";
import { expiryText, health, healthText, perMinute } from "./summary";

export type NodeKind =
    | "lane" | "baseline" | "service" | "instance" | "message" | "history" | "event" | "data" | "dataBinding";

/** `contextValue`s, matched by the `view/item/context` menus in package.json. */
export const CONTEXT: Record<NodeKind, string> = {
    lane: "lane.lane",
    baseline: "lane.baseline",
    service: "lane.service",
    instance: "lane.instance",
    message: "lane.message",
    history: "lane.history",
    event: "lane.historyEntry",
    data: "lane.data",
    dataBinding: "lane.dataBinding",
};

export interface TreeNode {
    /** Stable across refreshes, so VS Code keeps the expansion state. */
    id: string;
    kind: NodeKind;
    label: string;
    description?: string;
    tooltip?: string;
    /** A codicon id. */
    icon: string;
    /** A theme colour id for the icon. */
    iconColor?: string;
    /** The lane this node belongs to (also set on service and instance nodes). */
    lane?: string;
    service?: string;
    active?: boolean;
    /** Overrides `CONTEXT[kind]` (a baseline service has no lane to move its version from). */
    contextValue?: string;
    /** A command run when the node is clicked. */
    command?: string;
    /** Its children are fetched when it is expanded (a lane's History), not part of the status. */
    lazy?: boolean;
    children: TreeNode[];
}

const PASSED = "testing.iconPassed";
const FAILED = "testing.iconFailed";

const STATE_ICON: Record<string, [string, string | undefined]> = {
    healthy: ["pass-filled", PASSED],
    starting: ["loading~spin", undefined],
    unhealthy: ["error", FAILED],
    crashed: ["error", FAILED],
    stopped: ["circle-slash", undefined],
};

const rpmText = (n: number): string => `${n} req/min`;

function instanceNode(parentId: string, i: ServiceInfo): TreeNode {
    const [icon, iconColor] = STATE_ICON[i.state] ?? ["circle-outline", undefined];
    return {
        id: `${parentId}/${i.addr}`,
        kind: "instance",
        label: i.addr,
        description: `${i.state} · ${rpmText(i.requestsPerMinute)}`,
        tooltip: [`${i.service} in ${i.lane}`, `version ${i.version ?? "baseline"}`, `owner ${i.owner ?? "-"}`]
            .join("\n"),
        icon,
        iconColor,
        lane: i.lane,
        service: i.service,
        children: [],
    };
}

/** `build failed` for `build_failed`. */
function codeText(code: string): string {
    return code.replace(/_/g, " ");
}

/** The service's last deploy failed: said on its row until the next deploy. */
function failedServiceNode(f: DeployFailure, id: string, rest?: TreeNode): TreeNode {
    const head = `last deploy failed: ${codeText(f.error.code)} (${f.branch}@${f.commit.slice(0, 8)})`;
    return {
        id,
        kind: "service",
        label: f.service,
        description: rest?.description ? `${head} · ${rest.description}` : head,
        tooltip: [`${f.service} in ${f.lane}: the deploy of ${f.branch}@${f.commit.slice(0, 8)} failed`, f.error.message, f.error.help ?? ""]
            .filter((l) => l.length > 0)
            .join("\n"),
        icon: "error",
        iconColor: FAILED,
        lane: f.lane,
        service: f.service,
        command: "lane.showLogs",
        children: rest?.children ?? [],
    };
}

function serviceNode(lane: string, service: string, instances: ServiceInfo[]): TreeNode {
    const id = `lane:${lane}/service:${service}`;
    const h = health(instances);
    const versions = [...new Set(instances.map((i) => i.version ?? "baseline"))].join(", ");
    const ok = h.healthy === h.total;
    const rpm = perMinute(instances);
    return {
        id,
        kind: "service",
        label: service,
        description: [versions, healthText(h), rpmText(rpm)].join(" · "),
        tooltip: `${service} in ${lane}\nversion ${versions}\n${healthText(h)}\n${rpmText(rpm)}`,
        icon: ok ? "pass-filled" : "warning",
        iconColor: ok ? PASSED : "problemsWarningIcon.foreground",
        lane,
        service,
        contextValue: lane === BASELINE ? "lane.baselineService" : undefined,
        // One instance: its row would repeat the service's; show instances only when there are several.
        children: instances.length > 1 ? instances.map((i) => instanceNode(id, i)) : [],
    };
}

function servicesOf(lane: string, instances: ServiceInfo[], failures: readonly DeployFailure[] = []): TreeNode[] {
    const mine = failures.filter((f) => f.lane === lane);
    const names = [...new Set([...instances.map((i) => i.service), ...mine.map((f) => f.service)])].sort();
    return names.map((s) => {
        const running = instances.filter((i) => i.service === s);
        const node = running.length > 0 ? serviceNode(lane, s, running) : undefined;
        const failed = mine.find((f) => f.service === s);
        return failed ? failedServiceNode(failed, `lane:${lane}/service:${s}`, node) : (node as TreeNode);
    });
}

function laneNode(status: LaneStatus, lane: LaneInfo): TreeNode {
    const active = lane.id === status.activeLane;
    const h = health(lane.services);
    const parts: string[] = [];
    if (active) parts.push("active");
    if (h.total > 0) parts.push(healthText(h));
    parts.push(expiryText(lane));
    if (lane.merged) parts.push(mergedLaneText(lane));
    parts.push(rpmText(perMinute(lane.services)));
    const children = servicesOf(lane.id, lane.services, status.deployFailures);
    return {
        id: `lane:${lane.id}`,
        kind: "lane",
        label: lane.id,
        description: parts.join(" · "),
        tooltip: [
            `lane ${lane.id}${active ? " (active)" : ""}`,
            `owner ${lane.owner}`,
            `chain ${[...lane.chain, BASELINE].join(" → ")}`,
            expiryText(lane),
        ].join("\n"),
        icon: active ? "debug-stackframe" : "git-merge",
        iconColor: lane.expiresInSecs > 0 ? undefined : "disabledForeground",
        lane: lane.id,
        active,
        children: [
            ...(children.length > 0 ? children : [messageNode(`lane:${lane.id}/empty`, "no personal versions yet", lane.id)]),
            historyNode(lane.id),
        ],
    };
}

function baselineNode(status: LaneStatus): TreeNode {
    const active = status.activeLane === BASELINE;
    const h = health(status.baseline);
    const parts: string[] = [];
    if (active) parts.push("active");
    if (h.total > 0) parts.push(healthText(h));
    parts.push(rpmText(perMinute(status.baseline)));
    return {
        id: `lane:${BASELINE}`,
        kind: "baseline",
        label: BASELINE,
        description: parts.join(" · "),
        tooltip: "The versions production runs: requests without a lane, and the fallback of every lane.",
        icon: active ? "debug-stackframe" : "home",
        lane: BASELINE,
        active,
        children: servicesOf(BASELINE, status.baseline).map((n) => withDrift(n, status)),
    };
}

function messageNode(id: string, label: string, lane?: string): TreeNode {
    return { id, kind: "message", label, icon: "info", lane, children: [] };
}

/**
 * The tree's roots while the server is not there to ask: not found (with where it looked and the
 * fixes, each a click away) or stopped. Undefined while it runs or starts.
 */
export function serverNodes(state: string, tried: readonly string[]): TreeNode[] | undefined {
    if (state === "missing") {
        return [
            { ...messageNode("server:missing", "Server not found: no lane binary"), icon: "error", iconColor: FAILED },
            { ...messageNode("server:tried", `Looked in ${tried.join(", ")}`), icon: "search", tooltip: tried.join("\n") },
            {
                ...messageNode("server:settings", "Set Lane › Server: Path (lane.server.path)…"),
                icon: "gear",
                command: "lane.openServerSettings",
            },
            {
                ...messageNode("server:install", "Install: cargo install --path server/cli"),
                icon: "book",
                command: "lane.openReadme",
            },
            { ...messageNode("server:retry", "Look again"), icon: "refresh", command: "lane.restartServer" },
        ];
    }
    if (state === "failed") {
        return [
            {
                ...messageNode("server:failed", "lane lsp stopped: click to restart it (its log is in the Lane output)"),
                icon: "error",
                iconColor: FAILED,
                command: "lane.restartServer",
            },
        ];
    }
    return undefined;
}

/** The tree's roots: every lane (sorted by id), then baseline. */
export function buildTree(status: LaneStatus | undefined): TreeNode[] {
    if (status === undefined) return [messageNode("loading", "Waiting for lane lsp…")];
    if (status.backendError) {
        return [messageNode("error", `lane is unavailable: ${status.backendError.message}`)];
    }
    // Nothing at all yet: no rows, so VS Code shows the view's welcome (package.json
    // `viewsWelcome`) with the first step, "Deploy current branch to a lane".
    if (status.lanes.length === 0 && status.baseline.length === 0 && (status.deployFailures ?? []).length === 0) return [];
    const lanes = [...status.lanes].sort((a, b) => a.id.localeCompare(b.id)).map((l) => laneNode(status, l));
    // A failed deploy into a lane that is gone (the deploy had created it): on its own row.
    const orphans = (status.deployFailures ?? [])
        .filter((f) => !status.lanes.some((l) => l.id === f.lane))
        .map((f) => {
            const n = failedServiceNode(f, `failed:${f.lane}/${f.service}`);
            return { ...n, description: `${n.description} · into ${f.lane}` };
        });
    return [...orphans, ...lanes, baselineNode(status)];
}
