// Work-done progress started by the server (`window/workDoneProgress/create`), shown as a
// notification with a Cancel button.
//
// vscode-languageclient's own handler shows server-initiated progress in the status bar
// (`ProgressLocation.Window`), where there is no Cancel button. A deploy takes minutes and must be
// cancellable, so this replaces that handler after the client has started: the last handler
// registered for a method wins.

import * as vscode from "vscode";
import {
    type LanguageClient,
    type ProgressToken,
    WorkDoneProgress,
    type WorkDoneProgressBegin,
    WorkDoneProgressCancelNotification,
    WorkDoneProgressCreateRequest,
    type WorkDoneProgressReport,
} from "vscode-languageclient/node";

export function registerNotificationProgress(client: LanguageClient): vscode.Disposable {
    const parts = new Set<NotificationProgress>();
    const handler = client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
        parts.add(new NotificationProgress(client, token, (p) => parts.delete(p)));
    });
    return new vscode.Disposable(() => {
        handler.dispose();
        for (const p of parts) p.end();
        parts.clear();
    });
}

class NotificationProgress {
    private readonly subscription: vscode.Disposable;
    private progress?: vscode.Progress<{ message?: string; increment?: number }>;
    private pending?: WorkDoneProgressReport;
    private resolve?: () => void;
    private ended = false;
    private reported = 0;

    constructor(
        private readonly client: LanguageClient,
        private readonly token: ProgressToken,
        private readonly onEnd: (p: NotificationProgress) => void,
    ) {
        this.subscription = client.onProgress(WorkDoneProgress.type, token, (value) => {
            switch (value.kind) {
                case "begin":
                    this.begin(value);
                    break;
                case "report":
                    this.report(value);
                    break;
                case "end":
                    this.end();
                    break;
            }
        });
    }

    private begin(params: WorkDoneProgressBegin): void {
        void vscode.window.withProgress(
            {
                location: vscode.ProgressLocation.Notification,
                title: `Lane: ${params.title}`,
                cancellable: params.cancellable ?? false,
            },
            (progress, cancellation) => {
                if (this.ended) return Promise.resolve();
                this.progress = progress;
                const cancelled = cancellation.onCancellationRequested(() => {
                    void this.client.sendNotification(WorkDoneProgressCancelNotification.type, { token: this.token });
                });
                this.report({ kind: "report", message: params.message, percentage: params.percentage });
                if (this.pending) this.report(this.pending);
                return new Promise<void>((resolve) => {
                    this.resolve = () => {
                        cancelled.dispose();
                        resolve();
                    };
                });
            },
        );
    }

    private report(params: WorkDoneProgressReport): void {
        if (!this.progress) {
            this.pending = params;
            return;
        }
        let increment: number | undefined;
        if (typeof params.percentage === "number") {
            const pct = Math.max(0, Math.min(100, params.percentage));
            increment = Math.max(0, pct - this.reported);
            this.reported += increment;
        }
        this.progress.report({ message: params.message, increment });
    }

    end(): void {
        if (this.ended) return;
        this.ended = true;
        this.subscription.dispose();
        this.resolve?.();
        this.onEnd(this);
    }
}
