// Bundles the extension (dist/main.js) or, with --tests, compiles the tests and the modules they
// import to out/ (one CommonJS file per test, so `node --test out/test/...` runs them).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";

const tests = process.argv.includes("--tests");
const common = { bundle: true, platform: "node", target: "node20", format: "cjs", sourcemap: true, logLevel: "warning" };

if (tests) {
    const entryPoints = [];
    for (const dir of ["test/unit", "test/server"]) {
        for (const f of readdirSync(dir)) if (f.endsWith(".test.ts")) entryPoints.push(join(dir, f));
    }
    // vscode-free code only: a test that pulled in `vscode` would fail to bundle here.
    await esbuild.build({ ...common, entryPoints, outdir: "out", outbase: ".", external: [] });
} else {
    await esbuild.build({
        ...common,
        entryPoints: ["src/main.ts"],
        outfile: "dist/main.js",
        external: ["vscode"],
        minify: process.argv.includes("--minify"),
    });
}
