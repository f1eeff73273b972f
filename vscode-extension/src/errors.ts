// Turns a failed command's JSON-RPC error into what the user reads. Pure; no `vscode` import.

import { type ErrorInfo, LANE_ERROR, REQUEST_CANCELLED } from "./lsp_ext";

export interface UserError {
    /** The user (or the server on their behalf) cancelled: say so quietly, not as an error. */
    cancelled: boolean;
    /** The lane error code (`not_owner`, `build_failed`, …), when the server sent one. */
    code?: string;
    message: string;
    help?: string;
}

interface RpcErrorLike {
    code?: unknown;
    message?: unknown;
    data?: unknown;
}

function isErrorInfo(d: unknown): d is ErrorInfo {
    return typeof d === "object" && d !== null && typeof (d as ErrorInfo).code === "string";
}

export function toUserError(e: unknown): UserError {
    const err = (typeof e === "object" && e !== null ? e : { message: String(e) }) as RpcErrorLike;
    const message = typeof err.message === "string" ? err.message : String(e);
    if (err.code === REQUEST_CANCELLED) return { cancelled: true, message: "cancelled" };
    if (err.code === LANE_ERROR && isErrorInfo(err.data)) {
        const d = err.data;
        return { cancelled: d.code === "cancelled", code: d.code, message: d.message || message, help: d.help ?? undefined };
    }
    return { cancelled: false, message };
}

/** Ends `t` as a sentence. */
function sentence(t: string): string {
    const s = t.trim().replace(/:$/, "");
    return /[.!?]$/.test(s) ? s : `${s}.`;
}

/** Notifications show no markdown: `x` reads better as "x". */
export function plain(t: string): string {
    return t.replace(/`([^`]*)`/g, '"$1"');
}

/**
 * One notification: `Lane: <what> failed: <message>. <Help>.` Only the message's first line: the
 * rest (a build's last output lines) is in the output the notification's button opens.
 */
export function errorText(what: string, u: UserError): string {
    const first = u.message.split("\n")[0] ?? u.message;
    const help = u.help ? ` ${capitalize(sentence(plain(u.help)))}` : "";
    return `Lane: ${what} failed: ${sentence(plain(first))}${help}`;
}

function capitalize(t: string): string {
    return t.charAt(0).toUpperCase() + t.slice(1);
}

/** The button a failure's notification offers, for the lane error codes whose cause is in the output. */
export function errorAction(u: UserError): string | undefined {
    switch (u.code) {
        case "build_failed":
            return "Show Build Output";
        case "start_failed":
        case "unhealthy":
            return "Show Service Output";
        default:
            return undefined;
    }
}

/** Lane ids the server accepts: lowercase RFC 1123 label, 1–40 chars. Only for input-box hints;
 * the server validates again. */
export function laneIdProblem(id: string): string | undefined {
    if (id.length === 0) return "Enter a lane id.";
    if (id.length > 40) return "At most 40 characters.";
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(id)) {
        return "Only lowercase letters, digits and hyphens (-), starting and ending with a letter or digit.";
    }
    if (id === "baseline") return 'The name "baseline" is reserved: it means no lane.';
    return undefined;
}
