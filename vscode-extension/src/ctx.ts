// The extension's state: the language client of `lane lsp` and the last status it pushed.
//
// Status flows one way: the server pushes `lane/statusChanged` (plus one `lane/status` request at
// start), `Ctx` stores it and fires `onStatus`; the status bar and the tree only render it.
//
// The server advertises its commands (`lane.deployCurrentBranch`, …) in `executeCommandProvider`,
// and the language client registers each as a VS Code command of the same id. The extension's own
// UI commands therefore use other ids (`lane.deploy`, `lane.switch`, …; see package.json) and call
// the server's with `workspace/executeCommand` themselves.

import * as vscode from "vscode";
import {
    ExecuteCommandRequest,
    LanguageClient,
    type LanguageClientOptions,
    type ServerOptions,
    State,
} from "vscode-languageclient/node";

import { showAgentRestarted } from "./agentRestart";
import { locate, showServerNotFound } from "./bootstrap";
import { Config } from "./config";
import { serverNotFoundText } from "./locate";
import { DEFAULT_PROXY_LISTEN, LaneProxy } from "./proxy";
import * as ext from "./lsp_ext";
import { registerNotificationProgress } from "./progress";

export type ServerState = "stopped" | "starting" | "running" | "missing" | "failed";

export class Ctx implements vscode.Disposable {
    readonly config = new Config();
    readonly outputChannel: vscode.OutputChannel;
    private client?: LanguageClient;
    private clientDisposables: vscode.Disposable[] = [];
    private _status?: ext.LaneStatus;
    private _serverState: ServerState = "stopped";
    private _missing: string[] = [];
    private serverBin?: string;
    private proxy?: LaneProxy;
    private starting?: Promise<void>;
    private readonly statusEmitter = new vscode.EventEmitter<void>();
    /** Fires when `status` or `serverState` changes. */
    readonly onStatus = this.statusEmitter.event;

    constructor(readonly extCtx: vscode.ExtensionContext) {
        this.outputChannel = vscode.window.createOutputChannel("Lane");
    }

    get status(): ext.LaneStatus | undefined {
        return this._status;
    }

    get serverState(): ServerState {
        return this._serverState;
    }

    /** Where the server was looked for, when it was not found (`serverState` "missing"). */
    get missingTried(): readonly string[] {
        return this._missing;
    }

    /** Resolves once the current start finished (found or not, started or failed). */
    async started(): Promise<void> {
        await this.starting;
    }

    private setServerState(s: ServerState): void {
        this._serverState = s;
        this.statusEmitter.fire();
    }

    /** Stores the status the server sent last (its `revision` only follows backend changes, not
     * branch switches, so every push replaces the previous one). */
    setStatus(status: ext.LaneStatus): void {
        this._status = status;
        this.statusEmitter.fire();
    }

    start(): Promise<void> {
        this.starting ??= this.startOnce().finally(() => {
            this.starting = undefined;
        });
        return this.starting;
    }

    private async startOnce(): Promise<void> {
        if (this.client) return;
        this.setServerState("starting");
        const found = locate(this.config);
        if (!found.ok) {
            this._missing = found.tried;
            this.outputChannel.appendLine(serverNotFoundText(found.tried));
            this.setServerState("missing");
            // Not awaited: activation and every command go on while the popup waits for an answer.
            showServerNotFound(found.tried);
            return;
        }
        this._missing = [];
        const located = found.located;
        this.serverBin = located.path;
        this.outputChannel.appendLine(`lane: starting ${located.path} lsp (found via ${located.source})`);
        const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        const serverOptions: ServerOptions = {
            command: located.path,
            args: ["lsp"],
            options: { cwd: folder, env: { ...process.env, ...this.config.serverExtraEnv } },
        };
        const clientOptions: LanguageClientOptions = {
            documentSelector: [{ scheme: "file", pattern: "**/lane.toml" }],
            outputChannel: this.outputChannel,
            traceOutputChannel: this.outputChannel,
            // The extension shows the error each command is answered (with its button): the
            // server's own `window/showMessage` would be a second popup with the same text.
            initializationOptions: { client: "vscode", showErrors: false },
        };
        const client = new LanguageClient("lane", "Lane", serverOptions, clientOptions);
        this.client = client;
        this.clientDisposables.push(
            client.onNotification(ext.statusChanged, (s) => this.setStatus(s)),
            client.onNotification(ext.agentRestarted, (r) => showAgentRestarted(r, this.outputChannel)),
            client.onDidChangeState((e) => {
                if (e.newState === State.Stopped && this._serverState === "running") this.setServerState("failed");
            }),
        );
        try {
            await client.start();
        } catch (e) {
            this.outputChannel.appendLine(`lane: the server did not start: ${String(e)}`);
            this.setServerState("failed");
            return;
        }
        this.clientDisposables.push(registerNotificationProgress(client));
        const experimental = client.initializeResult?.capabilities.experimental as { laneProtocolVersion?: number } | undefined;
        const version = experimental?.laneProtocolVersion;
        if (version !== ext.PROTOCOL_VERSION) {
            void vscode.window.showWarningMessage(
                `Lane: ${located.path} speaks lane protocol ${version ?? "unknown"}, this extension ${ext.PROTOCOL_VERSION}; ` +
                    "update the one that is older.",
            );
        }
        this.setServerState("running");
        try {
            this.setStatus(await client.sendRequest(ext.status));
        } catch (e) {
            this.outputChannel.appendLine(`lane: lane/status failed: ${String(e)}`);
        }
    }

    /** Whether the `lane proxy` this extension started runs, and where it listens. */
    get proxyState(): { running: boolean; listen: string } {
        return { running: this.proxy?.running ?? false, listen: this.proxy?.listen ?? DEFAULT_PROXY_LISTEN };
    }

    /** Starts `lane proxy` (plain requests sent with `HTTP_PROXY` then follow Switch Traffic). */
    async startProxy(): Promise<void> {
        if (!this.serverBin) throw new Error(serverNotFoundText(this._missing));
        const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        this.proxy ??= new LaneProxy(
            this.serverBin,
            { ...process.env, ...this.config.serverExtraEnv },
            folder,
            DEFAULT_PROXY_LISTEN,
            (line) => this.outputChannel.appendLine(`[lane proxy] ${line}`),
            () => this.statusEmitter.fire(),
        );
        await this.proxy.start();
    }

    stopProxy(): void {
        this.proxy?.stop();
    }

    async stop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        for (const d of this.clientDisposables) d.dispose();
        this.clientDisposables = [];
        if (client) {
            try {
                await client.stop(5000);
            } catch (e) {
                this.outputChannel.appendLine(`lane: stopping the server: ${String(e)}`);
            }
        }
        this._status = undefined;
        this.setServerState("stopped");
    }

    async restart(): Promise<void> {
        await this.stop();
        await this.start();
    }

    /** Asks the server for a fresh status (normally it pushes one). */
    async refresh(): Promise<void> {
        this.setStatus(await this.running().sendRequest(ext.status));
    }

    /** A lane's history (`lane/history`), oldest first. */
    async history(lane: string): Promise<ext.HistoryEntryInfo[]> {
        return await this.running().sendRequest(ext.history, { lane });
    }

    /** Runs one of the server's `workspace/executeCommand` commands. */
    async exec<A, R>(cmd: ext.CommandSpec<A, R>, args?: A, token?: vscode.CancellationToken): Promise<R> {
        const params = { command: cmd.name, arguments: args === undefined ? [] : [args] };
        return (await this.running().sendRequest(ExecuteCommandRequest.type, params, token)) as R;
    }

    private running(): LanguageClient {
        if (this._serverState === "missing") throw new Error(serverNotFoundText(this._missing));
        if (!this.client || this._serverState !== "running") {
            throw new Error("lane lsp is not running (see the Lane output)");
        }
        return this.client;
    }

    dispose(): void {
        this.proxy?.stop();
        void this.stop();
        this.statusEmitter.dispose();
        this.outputChannel.dispose();
    }
}
