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

/** One line for a notification: `Lane: <what> failed: <message>. <help>` */
export function errorText(what: string, u: UserError): string {
    const help = u.help ? ` ${u.help}` : "";
    return `Lane: ${what} failed: ${u.message}${help}`;
}

/** Lane ids the server accepts: lowercase RFC 1123 label, 1–40 chars. Only for input-box hints;
 * the server validates again. */
export function laneIdProblem(id: string): string | undefined {
    if (id.length === 0) return "Enter a lane id.";
    if (id.length > 40) return "At most 40 characters.";
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(id)) return "Lowercase letters, digits and `-`, not at either end.";
    if (id === "baseline") return "`baseline` is reserved.";
    return undefined;
}
