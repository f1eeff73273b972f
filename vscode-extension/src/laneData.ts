// Keeps the rows of `lane.data.ls` for the Lanes view's "Data" nodes: asked again when the
// status's revision changes (a deploy, a deleted lane), not on every pushed status, since the
// server asks each data server for sizes.

import * as ext from "./lsp_ext";

/** What `LaneData` needs of the extension's context. */
export interface DataSource {
    exec<A, R>(cmd: ext.CommandSpec<A, R>, args?: A): Promise<R>;
}

export class LaneData {
    private revision: string | undefined;
    private pending = false;
    rows: ext.DataInfo[] | undefined;

    constructor(
        private readonly source: DataSource,
        private readonly changed: () => void,
        private readonly log: (line: string) => void,
    ) {}

    /** Asks the server again now (after an import or a restore changed sizes, not the revision). */
    reload(status: ext.LaneStatus | undefined): void {
        this.revision = undefined;
        this.update(status);
    }

    /** Asks the server again when `status` is of another revision than the last asked. */
    update(status: ext.LaneStatus | undefined): void {
        if (!status || status.backendError || status.revision === this.revision || this.pending) return;
        const revision = status.revision;
        this.pending = true;
        this.source
            .exec(ext.Commands.dataLs, { lane: null, folder: null })
            .then((rows) => {
                this.revision = revision;
                const before = JSON.stringify(this.rows);
                this.rows = rows;
                if (JSON.stringify(rows) !== before) this.changed();
            })
            .catch((e: unknown) => this.log(`lane: lane.data.ls: ${e instanceof Error ? e.message : String(e)}`))
            .finally(() => {
                this.pending = false;
            });
    }
}
