// One factory per command: `(ctx) => handler`. The handlers only ask (quick picks, input boxes),
// call the server's `workspace/executeCommand` commands and report; the lane logic is the server's.

import * as vscode from "vscode";

import type { Ctx } from "./ctx";
import { errorAction, errorText, laneIdProblem, plain, toUserError } from "./errors";
import { BASELINE, Commands, type DeleteResult, type DeployResult, type LaneInfo, type LaneStatus, type WorkspaceInfo } from "./lsp_ext";
import { laneNameFromBranch, lanePicks } from "./picks";
import { switchText } from "./proxy";
import { SERVER_PATH_SETTING, findReadme, settingsCommand } from "./settings";
import { type RequestTarget, type Requests, buildRequests, clipboardText, copiedText, deployedRequests } from "./request";
import { LANE_GLYPH, laneInstances, statusBarText, statusPlainText } from "./summary";
import { deleteConfirmText, deletedText, extendedText } from "./texts";
import type { TreeNode } from "./treeModel";

export type Cmd = (...args: unknown[]) => Promise<void>;
type Factory = (ctx: Ctx) => Cmd;

/** Runs `body`, turning a failure into one notification (cancellation into none). */
export async function report(ctx: Ctx, what: string, body: () => Promise<void>): Promise<void> {
    try {
        await body();
    } catch (e) {
        const u = toUserError(e);
        if (u.cancelled) {
            void vscode.window.showInformationMessage(`Lane: ${what} cancelled.`);
            return;
        }
        const action = errorAction(u);
        const actions = action ? [action] : [];
        void vscode.window.showErrorMessage(errorText(what, u), ...actions).then((choice) => {
            if (choice && choice === action) ctx.outputChannel.show(true);
        });
    }
}

function nodeLane(arg: unknown): string | undefined {
    const n = arg as Partial<TreeNode> | undefined;
    return typeof n?.lane === "string" ? n.lane : undefined;
}

async function lanes(ctx: Ctx): Promise<LaneInfo[]> {
    return ctx.exec(Commands.list);
}

function activeLane(ctx: Ctx): string {
    return ctx.status?.activeLane ?? BASELINE;
}

export async function pickLane(
    ctx: Ctx,
    title: string,
    o: { includeBaseline?: boolean; includeNew?: boolean; exclude?: string; suggestNew?: { lane: string; why: string }; newTitle?: string } = {},
): Promise<{ lane: string; isNew: boolean } | undefined> {
    const all = (await lanes(ctx)).filter((l) => l.id !== o.exclude);
    const items = lanePicks(all, { activeLane: activeLane(ctx), ...o });
    const picked = await vscode.window.showQuickPick(items, { title, placeHolder: "Choose a lane", matchOnDetail: true });
    if (!picked) return undefined;
    if (picked.isNew && picked.lane) return { lane: picked.lane, isNew: true };
    if (picked.isNew) {
        const lane = await askLaneId(o.newTitle ?? "New lane", o.suggestNew?.lane);
        return lane ? { lane, isNew: true } : undefined;
    }
    return picked.lane ? { lane: picked.lane, isNew: false } : undefined;
}

async function askLaneId(title: string, value?: string): Promise<string | undefined> {
    return vscode.window.showInputBox({
        title,
        value,
        prompt: "Lane id: lowercase letters, digits and -, 1–40 characters",
        validateInput: (v) => laneIdProblem(v.trim()),
    }).then((v) => v?.trim());
}

async function askDuration(title: string, prompt: string): Promise<string | undefined> {
    return vscode.window.showInputBox({
        title,
        prompt,
        value: "24h",
        validateInput: (v) => (/^\s*\d+\s*[smhd]\s*$/.test(v) ? undefined : "A duration like 30m, 2h or 3d"),
    }).then((v) => v?.trim());
}

/** `Deploy demo.b from branch feature/login`. */
function deployWhat(ws: WorkspaceInfo): string {
    return `Deploy ${ws.service ?? ws.folder} ${ws.branch ? `from branch ${ws.branch}` : "(not a git branch)"}`;
}

/** The workspace folder to deploy: the only service folder, or the one the user picks. */
async function pickWorkspace(status: LaneStatus | undefined): Promise<WorkspaceInfo | undefined> {
    const services = (status?.workspaces ?? []).filter((w) => w.service);
    if (services.length <= 1) return services[0];
    const picked = await vscode.window.showQuickPick(
        services.map((w) => ({ label: w.service ?? w.folder, description: w.branch ?? "", detail: w.folder, w })),
        { title: "Which service?" },
    );
    return picked?.w;
}

export const showStatus: Factory = (ctx) => () =>
    report(ctx, "Show Status", async () => {
        const status = await ctx.exec(Commands.status);
        ctx.setStatus(status);
        ctx.outputChannel.appendLine(`\n${statusPlainText(status)}\n`);
        ctx.outputChannel.show(true);
        const choice = await vscode.window.showInformationMessage(
            statusBarText(status).replace(LANE_GLYPH, "Lane:"),
            "Open Lanes View",
            "Switch Traffic",
        );
        if (choice === "Open Lanes View") await vscode.commands.executeCommand("lane.lanes.focus");
        else if (choice === "Switch Traffic") await vscode.commands.executeCommand("lane.switch");
    });

/**
 * Deploys the current branch of a workspace service into a lane. From the tree (a lane or a
 * service node) the lane, and for a service node the service, are the node's.
 */
export const deploy: Factory = (ctx) => (arg) =>
    report(ctx, "Deploy", async () => {
        const node = arg as Partial<TreeNode> | undefined;
        const services = (ctx.status?.workspaces ?? []).filter((w) => w.service);
        let ws: WorkspaceInfo | undefined;
        if (node?.service) {
            ws = services.find((w) => w.service === node.service);
            if (!ws) {
                void vscode.window.showWarningMessage(
                    `Lane: ${node.service} is not a service of this workspace; open its repository to deploy it.`,
                );
                return;
            }
        } else {
            ws = await pickWorkspace(ctx.status);
        }
        if (!ws) {
            void vscode.window.showWarningMessage("Lane: no workspace folder has a valid lane.toml to deploy.");
            return;
        }
        const what = deployWhat(ws);
        const suggested = laneNameFromBranch(ws.branch);
        const fromNode = node?.lane && node.lane !== BASELINE ? { lane: node.lane, isNew: false } : undefined;
        const picked =
            fromNode ??
            (await pickLane(ctx, `${what} into which lane?`, {
                includeNew: true,
                suggestNew: suggested ? { lane: suggested, why: `named after branch ${ws.branch}` } : undefined,
                newTitle: `${what} into a new lane`,
            }));
        if (!picked) return;
        const args = { folder: ws.folder, lane: picked.lane, parent: null, ttl: null, force: false };
        let result;
        try {
            result = await ctx.exec(Commands.deployCurrentBranch, args);
        } catch (e) {
            const u = toUserError(e);
            if (u.code !== "not_owner") throw e;
            const force = await vscode.window.showWarningMessage(`${plain(u.message)} Deploy anyway?`, { modal: true }, "Force");
            if (force !== "Force") return;
            result = await ctx.exec(Commands.deployCurrentBranch, { ...args, force: true });
        }
        const actions = result.lane !== activeLane(ctx) ? ["Switch Traffic To It", "Copy Request"] : ["Copy Request"];
        const choice = await vscode.window.showInformationMessage(
            `Lane: deployed ${result.service} (${result.branch}@${result.commit.slice(0, 8)}) into ${result.lane}: ${result.state}.`,
            ...actions,
        );
        if (choice === "Switch Traffic To It") await switchTo(ctx, result.lane);
        else if (choice === "Copy Request") await vscode.commands.executeCommand("lane.copyRequest", { deployed: result });
    });

async function switchTo(ctx: Ctx, lane: string): Promise<void> {
    const r = await ctx.exec(Commands.switchTraffic, { lane });
    const proxy = ctx.proxyState;
    const actions = r.activeLane === BASELINE ? [] : proxy.running ? ["Copy Request"] : ["Start Proxy", "Copy Request"];
    const choice = await vscode.window.showInformationMessage(switchText(r.activeLane, proxy), ...actions);
    if (choice === "Start Proxy") await vscode.commands.executeCommand("lane.startProxy");
    else if (choice === "Copy Request") await vscode.commands.executeCommand("lane.copyRequest");
}

export const startProxy: Factory = (ctx) => () =>
    report(ctx, "Start Proxy", async () => {
        await ctx.startProxy();
        const { listen } = ctx.proxyState;
        const choice = await vscode.window.showInformationMessage(
            `Lane: the lane proxy runs on ${listen}. Requests sent with HTTP_PROXY=http://${listen} enter the active lane ` +
                `(${activeLane(ctx)}) and follow Switch Traffic.`,
            "Copy HTTP_PROXY",
        );
        if (choice === "Copy HTTP_PROXY") await vscode.env.clipboard.writeText(`export HTTP_PROXY=http://${listen}\n`);
    });

export const stopProxy: Factory = (ctx) => () =>
    report(ctx, "Stop Proxy", () => {
        ctx.stopProxy();
        return Promise.resolve();
    });

export const switchTraffic: Factory = (ctx) => () =>
    report(ctx, "Switch Traffic", async () => {
        const picked = await pickLane(ctx, "Send your requests into…", { includeBaseline: true });
        if (picked) await switchTo(ctx, picked.lane);
    });

/** Inline action of the tree: switch to the node's lane. */
export const switchToNode: Factory = (ctx) => (node) =>
    report(ctx, "Switch Traffic", async () => {
        const lane = nodeLane(node);
        if (lane) await switchTo(ctx, lane);
    });

export const createLane: Factory = (ctx) => () =>
    report(ctx, "Create Lane", async () => {
        const lane = await askLaneId("Create Lane");
        if (!lane) return;
        const existing = await lanes(ctx);
        let parent: string | null = null;
        if (existing.length > 0) {
            const none = { label: "$(home) no parent", description: "falls back to baseline", id: undefined };
            const picked = await vscode.window.showQuickPick(
                [none, ...existing.map((l) => ({ label: `$(git-merge) ${l.id}`, description: `owner ${l.owner}`, id: l.id }))],
                { title: `Stack ${lane} on a parent lane?` },
            );
            if (!picked) return;
            parent = picked.id ?? null;
        }
        const ttl = await askDuration("Create Lane", "Lifetime");
        if (!ttl) return;
        const created = await ctx.exec(Commands.create, { lane, parent, ttl });
        void vscode.window.showInformationMessage(`Lane: created ${created.id} (expires in ${ttl}).`);
    });

export const deleteLane: Factory = (ctx) => (node) =>
    report(ctx, "Delete Lane", async () => {
        const lane = nodeLane(node) ?? (await pickLane(ctx, "Delete which lane?"))?.lane;
        if (!lane || lane === BASELINE) return;
        const wasActive = activeLane(ctx) === lane;
        const ok = await vscode.window.showWarningMessage(deleteConfirmText(ctx.status, lane), { modal: true }, "Delete");
        if (ok !== "Delete") return;
        let r: DeleteResult;
        try {
            r = await ctx.exec(Commands.delete, { lane, force: false });
        } catch (e) {
            const u = toUserError(e);
            if (u.code !== "not_owner" && u.code !== "conflict") throw e;
            const force = await vscode.window.showWarningMessage(`${plain(u.message)} Delete anyway?`, { modal: true }, "Force Delete");
            if (force !== "Force Delete") return;
            r = await ctx.exec(Commands.delete, { lane, force: true });
        }
        void vscode.window.showInformationMessage(deletedText(r, wasActive));
    });

export const extendLane: Factory = (ctx) => (node) =>
    report(ctx, "Extend Lane", async () => {
        const lane = nodeLane(node) ?? (await pickLane(ctx, "Extend which lane?"))?.lane;
        if (!lane || lane === BASELINE) return;
        const by = await askDuration(`Extend ${lane}`, "How much longer");
        if (!by) return;
        const l = await ctx.exec(Commands.extend, { lane, by, force: false });
        void vscode.window.showInformationMessage(extendedText(l, by));
    });

export const assignVersion: Factory = (ctx) => (node) =>
    report(ctx, "Move Version", async () => {
        const all = await lanes(ctx);
        const n = node as Partial<TreeNode> | undefined;
        let service = n?.kind === "service" ? n.service : undefined;
        let from = n?.kind === "service" ? n.lane : undefined;
        if (!service || !from) {
            const versions = all.flatMap((l) => l.services.map((s) => ({ l, s })));
            if (versions.length === 0) {
                void vscode.window.showInformationMessage("Lane: no lane has a personal version to move.");
                return;
            }
            const picked = await vscode.window.showQuickPick(
                versions.map(({ l, s }) => ({
                    label: s.service,
                    description: `${s.version ?? ""} in ${l.id}`,
                    service: s.service,
                    lane: l.id,
                })),
                { title: "Move which personal version?" },
            );
            if (!picked) return;
            service = picked.service;
            from = picked.lane;
        }
        const to = await pickLane(ctx, `Move ${service} from ${from} to…`, { includeNew: true, exclude: from });
        if (!to) return;
        const r = await ctx.exec(Commands.assign, { service, from, to: to.lane, force: false });
        void vscode.window.showInformationMessage(`Lane: moved ${r.service} from ${r.from} to ${r.to}.`);
    });

/**
 * Copies a request that reaches a service through the router. Its lane: the deploy's (after a
 * deploy, `{ deployed }`), the tree node's, else the active lane.
 */
export const copyRequest: Factory = (ctx) => (arg) =>
    report(ctx, "Copy Request", async () => {
        const status = ctx.status ?? (await ctx.exec(Commands.status));
        const deployed = (arg as { deployed?: DeployResult } | undefined)?.deployed;
        const header = ctx.config.laneHeader;
        let copied: { requests: Requests; target: RequestTarget; service: string };
        if (deployed) {
            const protocol = status.workspaces.find((w) => w.service === deployed.service)?.protocol ?? null;
            copied = { ...deployedRequests(deployed, protocol, header), service: deployed.service };
        } else {
            const node = arg as Partial<TreeNode> | undefined;
            const ws = node?.service
                ? status.workspaces.find((w) => w.service === node.service) ?? serviceWorkspace(node.service)
                : await pickWorkspace(status);
            if (!ws?.service) {
                void vscode.window.showWarningMessage("Lane: no workspace folder has a service (lane.toml).");
                return;
            }
            if (!status.router) {
                void vscode.window.showWarningMessage("Lane: the router is not running.");
                return;
            }
            const target = { router: status.router, header: header ?? status.laneHeader, lane: nodeLane(arg) ?? status.activeLane };
            copied = { requests: buildRequests(ws, target), target, service: ws.service };
        }
        await vscode.env.clipboard.writeText(clipboardText(copied.requests));
        void vscode.window.showInformationMessage(copiedText(copied.service, copied.target, copied.requests));
    });

/** A service that is not one of the workspace's folders (e.g. a tree node of another repo's). */
function serviceWorkspace(service: string): WorkspaceInfo {
    return { folder: "", service, protocol: null, branch: null, commit: null, error: null, host: null, url: null };
}

export const refresh: Factory = (ctx) => () => report(ctx, "Refresh", () => ctx.refresh());

export const restartServer: Factory = (ctx) => () => report(ctx, "Restart Server", () => ctx.restart());

export const showLogs: Factory = (ctx) => () => {
    ctx.outputChannel.show(true);
    return Promise.resolve();
};

/** The extension's README (`vsce` ships it as `readme.md`; the file system may be case-sensitive). */
export const openReadme: Factory = (ctx) => async () => {
    const dir = ctx.extCtx.extensionUri;
    const entries = await vscode.workspace.fs.readDirectory(dir);
    const name = findReadme(entries.map(([n]) => n));
    if (!name) {
        void vscode.window.showErrorMessage(`Lane: the extension has no README in ${dir.fsPath}.`);
        return;
    }
    await vscode.commands.executeCommand("markdown.showPreview", vscode.Uri.joinPath(dir, name));
};

/**
 * The settings editor at `lane.server.path`, in the scope the server's path belongs to: the
 * Remote tab when the extension host runs remotely (code-server, Remote-SSH, WSL), where the
 * binary lives; else the User tab.
 */
export const openServerSettings: Factory = () => async () => {
    const command = settingsCommand(vscode.env.remoteName);
    try {
        await vscode.commands.executeCommand(command, { query: SERVER_PATH_SETTING });
    } catch {
        await vscode.commands.executeCommand("workbench.action.openSettings", SERVER_PATH_SETTING);
    }
};

/**
 * "Show Logs" of a service in the tree: its output file (a local process's stdout and stderr),
 * else the Lane output, where its deploy's stages and build lines go.
 */
export const showServiceLogs: Factory = (ctx) => (arg) =>
    report(ctx, "Show Logs", async () => {
        const node = arg as Partial<TreeNode> | undefined;
        const status = ctx.status;
        const instances = status && node?.lane ? laneInstances(status, node.lane) : [];
        const log = instances.find((i) => i.service === node?.service && i.log)?.log;
        if (!log) {
            ctx.outputChannel.show(true);
            void vscode.window.showInformationMessage(
                `Lane: ${node?.service ?? "this service"} has no log file here (it does not run as a local process); its deploys are in the Lane output.`,
            );
            return;
        }
        await vscode.window.showTextDocument(vscode.Uri.file(log), { preview: true });
    });
