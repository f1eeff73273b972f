// `lane proxy`, run by the extension: a local HTTP proxy that adds the active lane's header to the
// requests sent through it (`HTTP_PROXY=http://127.0.0.1:4081`), so plain requests follow Switch
// Traffic too. No `vscode` import: the wire tests run it against the real binary.

import { type ChildProcess, spawn } from "node:child_process";

import { BASELINE } from "./lsp_ext";

/** `lane proxy`'s own default address. */
export const DEFAULT_PROXY_LISTEN = "127.0.0.1:4081";

export class LaneProxy {
    private child?: ChildProcess;
    private _running = false;

    constructor(
        private readonly bin: string,
        private readonly env: NodeJS.ProcessEnv,
        private readonly cwd: string | undefined,
        readonly listen = DEFAULT_PROXY_LISTEN,
        /** Every line the proxy prints, and its exit. */
        private readonly onLine: (line: string) => void = () => undefined,
        /** Called when it starts or stops running. */
        private readonly onChange: () => void = () => undefined,
    ) {}

    get running(): boolean {
        return this._running;
    }

    /** Starts it; resolves once it listens, rejects with what it said if it exits first. */
    start(timeoutMs = 20000): Promise<void> {
        if (this.child) return Promise.resolve();
        const child = spawn(this.bin, ["proxy", "--listen", this.listen], {
            cwd: this.cwd,
            env: this.env,
            stdio: ["ignore", "pipe", "pipe"],
        });
        this.child = child;
        let said = "";
        return new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`lane proxy did not start within ${timeoutMs / 1000}s: ${said.trim()}`)), timeoutMs);
            const read = (d: Buffer): void => {
                for (const line of d.toString().split("\n")) {
                    if (!line.trim()) continue;
                    said += `${line}\n`;
                    this.onLine(line);
                    if (!this._running && line.startsWith("lane proxy on ")) {
                        this._running = true;
                        clearTimeout(timer);
                        this.onChange();
                        resolve();
                    }
                }
            };
            child.stdout?.on("data", read);
            child.stderr?.on("data", read);
            child.on("error", (e) => {
                clearTimeout(timer);
                this.child = undefined;
                reject(e);
            });
            child.on("exit", (code) => {
                clearTimeout(timer);
                const was = this._running;
                this._running = false;
                this.child = undefined;
                this.onLine(`lane proxy exited (code ${code ?? "signal"})`);
                if (was) this.onChange();
                else reject(new Error(`lane proxy exited: ${said.trim() || `code ${code}`}`));
            });
        });
    }

    stop(): void {
        this.child?.kill("SIGINT");
    }
}

/** What Switch Traffic says it did: which requests now enter the lane, and which do not. */
export function switchText(lane: string, proxy: { running: boolean; listen: string }): string {
    if (lane === BASELINE) return "Lane: your requests enter baseline again (no lane header).";
    const via = `HTTP_PROXY=http://${proxy.listen}`;
    if (proxy.running) {
        return (
            `Lane: requests sent through the lane proxy (${via}) and requests copied from Lane now enter ${lane}; ` +
            "requests sent without the proxy still reach baseline."
        );
    }
    return (
        `Lane: requests copied from Lane (Copy Request) now enter ${lane}. Other requests still reach baseline: ` +
        `start the lane proxy and send them with ${via} to make them follow.`
    );
}
