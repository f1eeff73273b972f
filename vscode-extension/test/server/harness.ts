// Drives the real `lane lsp` over stdio with vscode-jsonrpc, the way the extension's language
// client does. Each test gets its own temp LANE_HOME, HOME and git repo; `close()` shuts the
// server down and runs `lane down`.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import {
    type MessageConnection,
    StreamMessageReader,
    StreamMessageWriter,
    createMessageConnection,
} from "vscode-jsonrpc/node";

import * as ext from "../../src/lsp_ext";

/** `$LANE_BIN`, else `../target/debug/lane` relative to vscode-extension/ (this file runs from out/test/server/). */
export function laneBin(): string {
    const bin = path.resolve(process.env["LANE_BIN"] || path.join(__dirname, "..", "..", "..", "..", "target", "debug", "lane"));
    if (!fs.existsSync(bin)) throw new Error(`lane binary ${bin} not found: build it (cargo build) or set LANE_BIN`);
    return bin;
}

export interface TestEnv {
    root: string;
    repo: string;
    env: NodeJS.ProcessEnv;
    bin: string;
}

export function makeEnv(name: string, manifest: (bin: string) => string): TestEnv {
    const bin = laneBin();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), `lane-vscode-${name}-`));
    const env: NodeJS.ProcessEnv = {
        PATH: process.env["PATH"],
        LANE_HOME: path.join(root, "home"),
        LANE_ROUTER_ADDR: "127.0.0.1:0",
        LANE_PORT_RANGE: "46000-46199",
        HOME: root,
        XDG_CONFIG_HOME: path.join(root, "config"),
        GIT_CONFIG_NOSYSTEM: "1",
        GIT_AUTHOR_NAME: "Alice",
        GIT_AUTHOR_EMAIL: "alice@example.com",
        GIT_COMMITTER_NAME: "Alice",
        GIT_COMMITTER_EMAIL: "alice@example.com",
        NO_COLOR: "1",
        RUST_LOG: "info",
    };
    const repo = path.join(root, "repos", "b");
    fs.mkdirSync(repo, { recursive: true });
    fs.writeFileSync(path.join(repo, "lane.toml"), manifest(bin));
    const git = (...args: string[]): void => {
        const r = spawnSync("git", args, { cwd: repo, env });
        if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
    };
    git("init", "-q", "-b", "main");
    git("config", "user.email", "alice@example.com");
    git("config", "user.name", "Alice");
    git("add", ".");
    git("commit", "-q", "-m", "initial");
    return { root, repo, env, bin };
}

/** The sample service `b` of app `demo`; `build` defaults to a quick echo. */
export function sampleManifest(build = "echo building"): (bin: string) => string {
    return (bin) =>
        `app = "demo"\nproc = "b"\n\n[build]\ncommand = "${build}"\n\n` +
        `[run]\ncommand = "'${bin}' sample-service --app demo --name b --port {port}"\n\n` +
        `[health]\nhttp = "/healthz"\ntimeout = "20s"\n`;
}

export interface Progress {
    token: string | number;
    value: { kind: string; title?: string; message?: string; percentage?: number; cancellable?: boolean };
}

export class Server {
    readonly conn: MessageConnection;
    readonly statuses: ext.LaneStatus[] = [];
    readonly progress: Progress[] = [];
    readonly created: (string | number)[] = [];
    /** `window/logMessage` texts: what the Lane output shows. */
    readonly logs: string[] = [];
    stderr = "";
    private waiters: (() => void)[] = [];

    private constructor(
        readonly env: TestEnv,
        private readonly child: ChildProcess,
    ) {
        this.conn = createMessageConnection(
            new StreamMessageReader(child.stdout!),
            new StreamMessageWriter(child.stdin!),
        );
        child.stderr!.on("data", (d: Buffer) => {
            this.stderr += d.toString();
        });
        this.conn.onNotification(ext.statusChanged, (s) => {
            this.statuses.push(s);
            this.wake();
        });
        this.conn.onRequest("window/workDoneProgress/create", (p: { token: string | number }) => {
            this.created.push(p.token);
            this.wake();
            return null;
        });
        this.conn.onUnhandledProgress((p) => {
            this.progress.push(p as Progress);
            this.wake();
        });
        this.conn.onNotification("window/logMessage", (p: { message: string }) => {
            this.logs.push(p.message);
            this.wake();
        });
        this.conn.onNotification("window/showMessage", () => undefined);
        this.conn.listen();
    }

    static start(env: TestEnv): Server {
        const child = spawn(env.bin, ["lsp"], { cwd: env.repo, env: env.env, stdio: ["pipe", "pipe", "pipe"] });
        return new Server(env, child);
    }

    private wake(): void {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
    }

    /** Resolves with the first value `check` returns that is not undefined, re-checked on every message. */
    async waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 20000): Promise<T> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const v = check();
            if (v !== undefined) return v;
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr:\n${this.stderr.slice(-3000)}`);
            await new Promise<void>((resolve) => {
                const t = setTimeout(resolve, Math.min(left, 500));
                this.waiters.push(() => {
                    clearTimeout(t);
                    resolve();
                });
            });
        }
    }

    /** A pushed status (newest first) that satisfies `pred`. */
    waitForStatus(what: string, pred: (s: ext.LaneStatus) => boolean, timeoutMs?: number): Promise<ext.LaneStatus> {
        return this.waitFor(what, () => [...this.statuses].reverse().find(pred), timeoutMs);
    }

    async exec<A, R>(cmd: ext.CommandSpec<A, R>, args?: A): Promise<R> {
        return (await this.conn.sendRequest("workspace/executeCommand", {
            command: cmd.name,
            arguments: args === undefined ? [] : [args],
        })) as R;
    }

    async close(): Promise<void> {
        try {
            await Promise.race([
                this.conn.sendRequest("shutdown").then(() => this.conn.sendNotification("exit")),
                new Promise((r) => setTimeout(r, 5000)),
            ]);
        } catch {
            // the server may be gone already
        }
        const exited = new Promise<void>((resolve) => {
            if (this.child.exitCode !== null) resolve();
            else this.child.once("exit", () => resolve());
        });
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (this.child.exitCode === null) this.child.kill("SIGKILL");
        this.conn.dispose();
        laneDown(this.env);
        fs.rmSync(this.env.root, { recursive: true, force: true });
    }
}

export function laneDown(env: TestEnv): void {
    spawnSync(env.bin, ["down"], { cwd: env.root, env: env.env, timeout: 40000 });
}

export const initializeParams = (env: TestEnv) => ({
    processId: process.pid,
    clientInfo: { name: "lane-vscode-test" },
    rootUri: `file://${env.repo}`,
    workspaceFolders: [{ uri: `file://${env.repo}`, name: "b" }],
    capabilities: { window: { workDoneProgress: true }, workspace: { workspaceFolders: true } },
    initializationOptions: { client: "vscode", showErrors: false },
});
