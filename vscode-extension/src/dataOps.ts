// The texts and choices of the Lanes view's data actions ("Export Data…", "Import Data…",
// "Back Up Data", "Restore Data…"), which call `lane.data.export | import | backup | backups |
// restore`. Pure functions, no `vscode` import: the unit tests load this module in plain node.

import type { DataBackupInfo, DataTransferResult } from "./lsp_ext";
import type { TreeNode } from "./treeModel";

/** What a data action applies to, from the tree node it was invoked on. */
export interface DataTarget {
    lane: string;
    /** Only this binding (the action was invoked on a binding of the Data node). */
    binding: string | null;
}

/** The lane (and binding) of a Data or binding node; undefined for other nodes. */
export function dataTarget(node: Partial<TreeNode> | undefined): DataTarget | undefined {
    if (!node || typeof node.lane !== "string") return undefined;
    if (node.kind === "dataBinding" && typeof node.label === "string") return { lane: node.lane, binding: node.label };
    if (node.kind === "data" || node.kind === "lane") return { lane: node.lane, binding: null };
    return undefined;
}

/** `1.5 MB`, `320 KB`, `12 bytes`. */
export function sizeText(bytes: number): string {
    if (bytes < 1024) return `${bytes} byte${bytes === 1 ? "" : "s"}`;
    const units = ["KB", "MB", "GB", "TB"];
    let v = bytes / 1024;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) {
        v /= 1024;
        u++;
    }
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** The suggested file name of an export: `<lane>[-<binding>]-<YYYYMMDD-HHMM>.lanedata` (UTC). */
export function exportFileName(t: DataTarget, now: Date): string {
    const p = (n: number): string => String(n).padStart(2, "0");
    const stamp = `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}-${p(now.getUTCHours())}${p(now.getUTCMinutes())}`;
    return `${t.lane}${t.binding ? `-${t.binding}` : ""}-${stamp}.lanedata`;
}

/** `20261130T124500Z` → `2026-11-30 12:45:00 UTC`; other names as they are. */
export function backupTime(name: string): string {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(name);
    return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]} UTC` : name;
}

export interface BackupPick {
    label: string;
    description: string;
    detail: string;
    name: string;
}

/** The quick pick of a lane's backups: newest first, with size and file. */
export function backupPicks(backups: readonly DataBackupInfo[], lane: string): BackupPick[] {
    return backups
        .filter((b) => b.lane === lane)
        .slice()
        .sort((a, b) => b.name.localeCompare(a.name))
        .map((b, i) => ({
            label: `$(history) ${backupTime(b.name)}`,
            description: `${sizeText(b.bytes)}${i === 0 ? " · newest" : ""}`,
            detail: b.path,
            name: b.name,
        }));
}

/** The confirmation before an import or a restore replaces a lane's data. */
export function replaceConfirmText(t: DataTarget, from: string): string {
    const what = t.binding ? `binding ${t.binding} of lane ${t.lane}` : `the data of lane ${t.lane}`;
    return (
        `Replace ${what} with ${from}? The current data is swapped out only when the whole file is in; ` +
        `a failure or a cancel leaves it as it is.`
    );
}

/** `exported lane feature-x (orders: 1200 rows, cache: 3 keys, events: 9 records; 1.5 MB, 0.4s) to /tmp/x.lanedata`. */
export function transferText(verb: "exported" | "imported" | "backed up" | "restored", r: DataTransferResult): string {
    const unit = (kind: string) => (kind === "mysql" ? "rows" : kind === "kafka" ? "records" : "keys");
    const parts = r.bindings.map((b) => `${b.binding}: ${b.items} ${unit(b.kind)}`);
    const moved = `${parts.join(", ")}${parts.length ? "; " : ""}${sizeText(r.bytes)}, ${r.seconds.toFixed(1)}s`;
    const where = verb === "exported" || verb === "backed up" ? "to" : "from";
    const notes = r.notes.length ? ` Left out: ${r.notes.join("; ")}.` : "";
    return `Lane: ${verb} lane ${r.lane} (${moved}) ${where} ${r.file}.${notes}`;
}
