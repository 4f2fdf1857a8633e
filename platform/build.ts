/**
 * The build: each component (components.ts) and each worker thread (threads.ts) bundled by esbuild into one
 * ES module, `dist/<name>.mjs`, with its npm packages inside. The processes run these, not the TypeScript through
 * tsx: a bundle starts in well under half the time and leaves out tsx's loader thread, which matters most to the
 * engine's recovery time. `npm start`, the test setup and `npm run build` (the Dockerfile, the npm scripts) call it.
 *
 * Bundles sit one folder below the root, like the sources they replace, so paths a module resolves from its own
 * URL (`../migrations/`) hold in both. Source maps sit beside them; components run with --enable-source-maps, so
 * stack traces name the TypeScript files. The maps leave out the sources' text (stack traces need only the
 * mappings): a third of the size, and every thread reads and parses its map as it starts.
 */
import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { COMPONENTS } from "./components.ts";
import { THREADS } from "./threads.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where the bundles go: an output, never read by the build. */
export const DIST_DIR = join(ROOT, "dist");

/** Builds every bundle afresh; resolves with how long it took (ms). */
export async function buildBundles(): Promise<number> {
  const started = performance.now();
  const entryPoints: Record<string, string> = {};
  for (const c of COMPONENTS) entryPoints[c.name] = c.entry;
  for (const [name, entry] of Object.entries(THREADS)) entryPoints[name] = entry;
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints,
    outdir: DIST_DIR,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "linked",
    sourcesContent: false,
    logLevel: "error",
    // Bundled CommonJS packages call require(); an ES module has none of its own.
    banner: {
      js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);',
    },
    write: false,
  });
  // Each file replaced in one rename: a process starting meanwhile (a restart under `npm start` while the tests
  // build) reads the old bundle or the new one, never half of one. That holds per file only: a process or thread
  // started after the build runs new code beside older processes, so building under a running npm start mixes
  // versions (docs/operations.md, Running locally: stop it first).
  await mkdir(DIST_DIR, { recursive: true });
  for (const file of result.outputFiles) {
    const temporary = `${file.path}.${process.pid}.tmp`;
    await writeFile(temporary, file.contents);
    await rename(temporary, file.path);
  }
  return performance.now() - started;
}
