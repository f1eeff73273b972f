// Finding the `lane` binary: env `LANE_SERVER_PATH` → setting `lane.server.path` → `lane` on PATH.
// No `vscode` import, so the order is unit-tested.

import * as fs from "node:fs";
import * as path from "node:path";

export type Source = "env" | "setting" | "path";

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
    isExecutable?: (p: string) => boolean;
    /** Expands `~` at the start of the setting. */
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

export function locateServer(l: Lookup): LocateResult {
    const exe = l.isExecutable ?? isExecutableFile;
    const tried: string[] = [];
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
    for (const dir of (l.pathVar ?? "").split(path.delimiter)) {
        if (!dir) continue;
        const p = path.join(dir, "lane");
        if (exe(p)) return { ok: true, located: { path: p, source: "path" } };
    }
    tried.push("`lane` on PATH");
    return { ok: false, tried };
}
