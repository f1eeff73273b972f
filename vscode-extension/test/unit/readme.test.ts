// The README's first-run screenshots are the ones the end-to-end run takes (issue 14, acceptance).

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

const root = path.join(__dirname, "..", "..", "..");
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
const e2e = fs.readFileSync(path.join(root, "e2e", "run.ts"), "utf8");

describe("README screenshots", () => {
    const images = [...readme.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    it("show the first run", () => {
        assert.deepEqual(images, ["media/server-not-found.png", "media/first-run.png"]);
    });
    for (const image of images) {
        it(`${image} is committed and written by the e2e run`, () => {
            assert.ok(fs.statSync(path.join(root, image)).size > 10_000, `${image} is a real screenshot`);
            assert.ok(e2e.includes(`path.join(mediaDir, "${path.basename(image)}")`), `e2e/run.ts writes ${image}`);
        });
    }
});
