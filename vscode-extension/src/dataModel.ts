// The "Data" node of a lane in the Lanes view: the lane's own copies of its data sources (a MySQL
// database, a Redis index or key prefix, Kafka topics, an Apollo cluster) with sizes and quotas, from the server's
// `lane.data.ls` (the rows of `lane data ls --json`). Pure data, no `vscode` import.

import type { DataInfo } from "./lsp_ext";
import type { TreeNode } from "./treeModel";

const KIND_ICON: Record<string, string> = {
    mysql: "database",
    redis: "layers",
    kafka: "broadcast",
    apollo: "settings-gear",
};

function bindingNode(parentId: string, r: DataInfo): TreeNode {
    const description = [r.kind, r.target, r.size, r.quota].filter((p): p is string => !!p).join(" · ");
    return {
        id: `${parentId}/${r.binding}`,
        kind: "dataBinding",
        label: r.binding,
        description,
        tooltip: [
            `${r.binding} (${r.kind}) of lane ${r.lane}`,
            `the lane's own copy: ${r.target}`,
            `size: ${r.size ?? "unknown (no lane.toml here declares the binding, or its server did not answer)"}`,
            `quota: ${r.quota ?? "-"}`,
        ].join("\n"),
        icon: KIND_ICON[r.kind] ?? "database",
        lane: r.lane,
        children: [],
    };
}

/** The "Data" node of lane `lane`, or undefined when the lane owns no data. */
export function dataNode(lane: string, rows: readonly DataInfo[]): TreeNode | undefined {
    const mine = rows.filter((r) => r.lane === lane).sort((a, b) => a.binding.localeCompare(b.binding));
    if (mine.length === 0) return undefined;
    const id = `lane:${lane}/data`;
    return {
        id,
        kind: "data",
        label: "Data",
        description: `${mine.length} binding${mine.length === 1 ? "" : "s"}`,
        tooltip: `What lane ${lane} owns of its data sources; removed with the lane.`,
        icon: "database",
        lane,
        children: mine.map((r) => bindingNode(id, r)),
    };
}

/**
 * The tree with a "Data" node first under each lane that owns data (a lane whose only child was
 * the "no personal versions yet" message keeps it after the Data node). `rows` undefined: not
 * asked yet, the tree as it is.
 */
export function withDataNodes(roots: TreeNode[], rows: readonly DataInfo[] | undefined): TreeNode[] {
    if (!rows || rows.length === 0) return roots;
    return roots.map((n) => {
        if (n.kind !== "lane" || !n.lane) return n;
        const data = dataNode(n.lane, rows);
        return data ? { ...n, children: [data, ...n.children] } : n;
    });
}
