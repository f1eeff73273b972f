// Builds ready-to-run `curl` and `grpcurl` commands that reach the workspace's service through the
// router with the active lane's header. Pure functions, no `vscode` import.

import { BASELINE, type DeployResult, type WorkspaceInfo } from "./lsp_ext";

export interface RequestTarget {
    /** The router's address, `host:port`. */
    router: string;
    /** The header that carries the lane id. */
    header: string;
    /** The lane to send; `baseline` sends no header. */
    lane: string;
}

export interface Requests {
    curl: string;
    /** Only for gRPC services. */
    grpcurl?: string;
}

/** Quotes a word for a POSIX shell when it needs quoting. */
export function shellQuote(word: string): string {
    if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
    return `'${word.replace(/'/g, `'\\''`)}'`;
}

function splitHostPort(addr: string): [string, string] {
    const i = addr.lastIndexOf(":");
    return i < 0 ? [addr, "80"] : [addr.slice(0, i), addr.slice(i + 1)];
}

function isLoopback(host: string): boolean {
    return host === "localhost" || host === "[::1]" || /^127\./.test(host);
}

/**
 * The service's router host and URL: the server sends them (`host`, `url`); they are derived from
 * the service id (`demo.b` → `b.demo.localhost`) only if it did not.
 */
export function serviceAddress(ws: WorkspaceInfo, router: string): { host: string; url: string } {
    const [, port] = splitHostPort(router);
    let host = ws.host;
    if (!host) {
        const [app, proc] = (ws.service ?? "").split(".");
        if (!app || !proc) throw new Error("the workspace has no service (no valid lane.toml)");
        host = `${proc}.${app}.localhost:${port}`;
    }
    return { host, url: ws.url ?? `http://${host}/` };
}

export function buildRequests(ws: WorkspaceInfo, t: RequestTarget): Requests {
    const { host, url } = serviceAddress(ws, t.router);
    const [routerHost, routerPort] = splitHostPort(t.router);
    const [name] = splitHostPort(host);
    const headerArgs = t.lane === BASELINE ? [] : ["-H", `${t.header}: ${t.lane}`];
    // `*.localhost` resolves to loopback; a router elsewhere is reached with --connect-to.
    const connect = isLoopback(routerHost) ? [] : ["--connect-to", `${name}:${routerPort}:${routerHost}:${routerPort}`];
    const curl = ["curl", "-sS", "-i", ...headerArgs, ...connect, url];
    const out: Requests = { curl: curl.map(shellQuote).join(" ") };
    if (ws.protocol === "grpc") {
        const grpc = ["grpcurl", "-plaintext", "-authority", name, ...headerArgs, t.router, "list"];
        out.grpcurl = grpc.map(shellQuote).join(" ");
    }
    return out;
}

/** The text put on the clipboard: the curl command, and the grpcurl one for gRPC services. */
export function clipboardText(r: Requests): string {
    return r.grpcurl ? `${r.grpcurl}\n${r.curl}\n` : `${r.curl}\n`;
}

/**
 * The request that reaches the version a deploy just made, whatever lane the developer's traffic
 * is on: the deploy's lane header (`header` overrides the server's) via the router it names.
 */
export function deployedRequests(
    result: DeployResult,
    protocol: WorkspaceInfo["protocol"],
    header?: string,
): { requests: Requests; target: RequestTarget } {
    if (!result.router) throw new Error("the router is not running");
    const ws: WorkspaceInfo = {
        folder: "",
        service: result.service,
        protocol,
        branch: result.branch,
        commit: result.commit,
        error: null,
        host: result.host,
        url: result.url,
    };
    const target = { router: result.router, header: header ?? result.laneHeader, lane: result.lane };
    return { requests: buildRequests(ws, target), target };
}

/** What a copy says: which service and lane the request targets, and with which header. */
export function copiedText(service: string, t: RequestTarget, r: Requests): string {
    const where = t.lane === BASELINE ? `${service} on baseline (no lane header)` : `${service} in lane ${t.lane} (header ${t.header}: ${t.lane})`;
    return `Lane: copied a request to ${where}: ${r.grpcurl ?? r.curl}`;
}
