/**
 * start.mjs refuses a Node too old for `npm start`: one without process.loadEnvFile, which start.ts reads `.env`
 * with, would start the system without what `.env` sets, without a word. It runs as a copy in a folder of its own
 * whose dependencies look installed (so it never runs npm ci) but are not there (so what passes the check stops at
 * loading tsx), under a Node version faked before it loads.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./repository-files.ts";

const root = mkdtempSync(join(tmpdir(), "paper-broker-node-version-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "scripts"));
mkdirSync(join(root, "node_modules"));
copyFileSync(join(REPO_ROOT, "scripts", "start.mjs"), join(root, "scripts", "start.mjs"));
writeFileSync(join(root, "package-lock.json"), "{}");
utimesSync(join(root, "package-lock.json"), new Date(2000, 0, 1), new Date(2000, 0, 1));
writeFileSync(join(root, "node_modules", ".package-lock.json"), "{}");
const fake = join(root, "fake-version.mjs");
writeFileSync(
  fake,
  `Object.defineProperty(process.versions, "node", { value: process.env.FAKE_NODE_VERSION });
Object.defineProperty(process, "version", { value: "v" + process.env.FAKE_NODE_VERSION });
`,
);

/** start.mjs under Node `version`: its exit code and what it wrote on stderr. */
function startOn(version: string): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, ["--import", pathToFileURL(fake).href, join(root, "scripts", "start.mjs")], {
    cwd: root,
    env: { ...process.env, FAKE_NODE_VERSION: version },
    encoding: "utf8",
    timeout: 20_000,
  });
  return { status: run.status, stderr: run.stderr };
}

describe("start.mjs's Node check", () => {
  for (const version of ["18.20.4", "20.0.0", "20.11.1", "21.6.2"]) {
    it(`refuses Node ${version}, naming the version it needs and this one`, () => {
      expect(startOn(version)).toEqual({
        status: 1,
        stderr: `paper-broker needs Node 20.12 or newer (on Node 21, 21.7 or newer); this is v${version}.\n`,
      });
    });
  }

  for (const version of ["20.12.0", "21.7.0", "22.1.0"]) {
    it(`lets Node ${version} through, to load tsx`, () => {
      const { stderr } = startOn(version);
      expect(stderr).not.toContain("needs Node");
      expect(stderr).toContain("Cannot find package 'tsx'");
    });
  }

  // package.json's engines is what the tests and tools need (vite and eslint: 20.19, 22.13 or 24), more than
  // npm start does: every Node it admits passes this check, and the README names both.
  it("lets through every Node package.json's engines admits, and agrees with the README", () => {
    const engines = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { engines: { node: string } })
      .engines.node;
    expect(engines).toBe("^20.19.0 || ^22.13.0 || >=24");
    for (const version of ["20.19.0", "22.13.0", "24.0.0"]) expect(startOn(version).stderr).not.toContain("needs Node");
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    expect(readme).toContain("Node 20.12+ (tests: 20.19+, 22.13+ or 24+)");
  });
});
