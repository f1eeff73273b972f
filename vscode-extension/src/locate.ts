// Finding the `lane` binary: env `LANE_SERVER_PATH` → setting `lane.server.path` → `lane` on PATH →
// the usual install locations (a remote VS Code server often gets no login shell's PATH, so
// `cargo install`'s directory may be missing from it). No `vscode` import, so the order is
// unit-tested.

import * as fs from "node:fs";
import * as path from "node:path";

export type Source = "env" | "setting" | "path" | "install-dir";

export interface Located {
    path: string;
    source: Source;
}

export interface Lookup {
    /** `LANE_SERVER_PATH`. */
    env?: string;
    /** `lane.server.path`. */
    setting?: string;
    /** `PATH`. */
    pathVar?: string;
    /** `CARGO_HOME` (where `cargo install` puts binaries, under `bin/`). */
    cargoHome?: string;
    isExecutable?: (p: string) => boolean;
    /** Expands `~` at the start of the setting; also the base of `~/.cargo/bin` and `~/.local/bin`. */
    home?: string;
}

export type LocateResult = { ok: true; located: Located } | { ok: false; tried: string[] };

export function isExecutableFile(p: string): boolean {
    try {
        const st = fs.statSync(p);
        if (!st.isFile()) return false;
        fs.accessSync(p, fs.constants.X_OK);
        return true;
    } catch {
        return false;
    }
}

function expandHome(p: string, home: string | undefined): string {
    if (home && (p === "~" || p.startsWith("~/"))) return path.join(home, p.slice(1));
    return p;
}

/** The directories `lane` is usually installed into, in the order they are searched after PATH:
 * `cargo install`'s (`$CARGO_HOME/bin`, else `~/.cargo/bin`), `~/.local/bin`, `/usr/local/bin`. */
export function installDirs(l: Pick<Lookup, "cargoHome" | "home">): string[] {
    const dirs: string[] = [];
    if (l.cargoHome) dirs.push(path.join(expandHome(l.cargoHome, l.home), "bin"));
    if (l.home) dirs.push(path.join(l.home, ".cargo", "bin"), path.join(l.home, ".local", "bin"));
    dirs.push("/usr/local/bin");
    return [...new Set(dirs)];
}

export function locateServer(l: Lookup): LocateResult {
    const exe = l.isExecutable ?? isExecutableFile;
    // An explicit choice (env or setting) that is wrong is an error, not a reason to fall through:
    // silently running another `lane` would be surprising.
    if (l.env) {
        const p = expandHome(l.env, l.home);
        return exe(p) ? { ok: true, located: { path: p, source: "env" } } : { ok: false, tried: [`LANE_SERVER_PATH=${p}`] };
    }
    if (l.setting) {
        const p = expandHome(l.setting, l.home);
        return exe(p) ? { ok: true, located: { path: p, source: "setting" } } : { ok: false, tried: [`lane.server.path=${p}`] };
    }
    const onPath = (l.pathVar ?? "").split(path.delimiter).filter((d) => d.length > 0);
    for (const dir of onPath) {
        const p = path.join(dir, "lane");
        if (exe(p)) return { ok: true, located: { path: p, source: "path" } };
    }
    const tried = ["PATH"];
    for (const dir of installDirs(l)) {
        if (onPath.includes(dir)) continue;
        const p = path.join(dir, "lane");
        if (exe(p)) return { ok: true, located: { path: p, source: "install-dir" } };
        tried.push(dir);
    }
    return { ok: false, tried };
}

/** What the user reads when no server was found: where it looked and how to fix it. */
export function serverNotFoundText(tried: readonly string[]): string {
    return (
        `Lane: server not found: no lane binary (looked in ${tried.join(", ")}). ` +
        'Install it with "cargo install --path server/cli" in the lane repository, or set ' +
        "Lane › Server: Path (lane.server.path) to the binary."
    );
}
