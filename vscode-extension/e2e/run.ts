// The extension in a real VS Code (code-server) in headless Chromium: the status-bar indicator
// shows the branch and lane, "Lane: Switch Traffic" from the command palette changes it, "Lane:
// Deploy Current Branch" shows a cancellable progress notification and then the healthy count.
// Run by scripts/e2e.sh, which starts code-server and passes E2E_URL.

import * as path from "node:path";

import { type Locator, type Page, chromium } from "playwright-core";

const url = need("E2E_URL");
const outDir = process.env["E2E_OUT"] ?? path.join(__dirname, "..", "..", "e2e");
const TIMEOUT = 90_000;

function need(name: string): string {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
}

function log(msg: string): void {
    console.log(`e2e: ${msg}`);
}

async function waitForText(what: string, loc: Locator, want: RegExp, timeoutMs = TIMEOUT): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
        const all = await loc.allTextContents().catch(() => []);
        const hit = all.find((t) => want.test(t));
        if (hit !== undefined) {
            log(`${what}: "${hit.trim().slice(0, 160)}"`);
            return hit;
        }
        last = all.join(" | ");
        await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out waiting for ${what} to match ${want}; last seen: "${last}"`);
}

async function runCommand(page: Page, title: string): Promise<void> {
    await page.keyboard.press("F1");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: TIMEOUT });
    await input.fill(`>${title}`);
    const row = page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
    await row.waitFor({ state: "visible", timeout: TIMEOUT });
    await page.keyboard.press("Enter");
    log(`ran "${title}"`);
}

/** Waits for a quick pick titled like `title`, types `filter` and takes the first match. */
async function pick(page: Page, title: RegExp, filter: string): Promise<void> {
    await waitForText("quick pick title", page.locator(".quick-input-widget .quick-input-title"), title);
    const input = page.locator(".quick-input-widget input");
    await input.fill(filter);
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: filter }).first().waitFor({ timeout: TIMEOUT });
    await page.keyboard.press("Enter");
    log(`picked ${filter}`);
}

async function main(): Promise<void> {
    const browser = await chromium.launch({
        executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium",
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on("console", (m) => {
        if (m.type() === "error") console.log(`browser: ${m.text().slice(0, 300)}`);
    });
    try {
        log(`opening ${url}`);
        await page.goto(url, { timeout: TIMEOUT });
        await page.locator(".part.statusbar").waitFor({ state: "visible", timeout: TIMEOUT });
        const indicator = page.locator(".part.statusbar .statusbar-item:has(.codicon-git-merge)");

        // 1. The indicator shows the lane (baseline) and the branch, from the pushed status.
        await waitForText("indicator", indicator, /baseline · main/);

        // 2. Switch Traffic from the command palette → the indicator follows.
        await runCommand(page, "Lane: Switch Traffic");
        await pick(page, /Send your requests into/, "e2e-a");
        await waitForText("indicator after switch", indicator, /e2e-a · main/);

        // 3. Deploy Current Branch → a progress notification with Cancel, then 1/1 healthy.
        await runCommand(page, "Lane: Deploy Current Branch");
        await pick(page, /Deploy demo\.b from branch main into which lane\?/, "e2e-a");
        const toast = page.locator(".notification-toast", { hasText: "Deploying demo.b" });
        await waitForText("progress notification", toast, /Lane: Deploying demo\.b \(main@\w+\) into lane e2e-a/);
        await toast.locator(".monaco-button", { hasText: "Cancel" }).first().waitFor({ state: "visible", timeout: 10_000 });
        log("the progress notification has a Cancel button");
        await page.screenshot({ path: path.join(outDir, "progress.png") });
        await waitForText("indicator after deploy", indicator, /e2e-a · main · 1\/1 healthy/);

        // 4. The Lanes view lists the lane and the deployed service.
        await page.locator('.activitybar .action-item a[aria-label^="Lane"]').first().click();
        await waitForText("lanes view", page.locator(".pane-body .monaco-list-row"), /demo\.b/);

        await page.screenshot({ path: path.join(outDir, "screenshot.png") });
        log("passed");
    } catch (e) {
        await page.screenshot({ path: path.join(outDir, "screenshot.png") }).catch(() => undefined);
        throw e;
    } finally {
        await browser.close();
    }
}

main().then(
    () => process.exit(0),
    (e: unknown) => {
        console.error(`e2e: FAILED: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
    },
);
