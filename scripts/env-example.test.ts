// .env.example lists every variable the processes read: each name the product code reads from an environment is
// there, or below with the reason it is not, and each name there is read somewhere.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMPONENTS, replicasOf } from "../platform/components.ts";
import { replicaMetricsPortVariable } from "../platform/metrics.ts";
import { REPO_ROOT as root, repositoryFiles } from "./repository-files.ts";

/** Read by product code but not the processes' configuration, so not in .env.example. */
const NOT_IN_EXAMPLE: Readonly<Record<string, string>> = {
  PATH: "the system's: where redis-server and Postgres's binaries are found",
  TZ: "the system's: passed on to the Postgres that npm start runs",
  LOCAL_POSTGRES_PROBE_URL: "the tests' only (prefer: running): platform/testing/global-setup.ts",
  API_DOMAIN: "`sst deploy`'s environment, not a process's: infra/README.md",
  STREAM_DOMAIN: "`sst deploy`'s environment, not a process's: infra/README.md",
};

/** Product source: TypeScript and scripts outside tests, test helpers and benchmarks. */
function productFiles(): string[] {
  return repositoryFiles(["testing", "bench"]).filter((f) => /\.(ts|mjs)$/.test(f) && !/\.test\.ts$/.test(f));
}

/**
 * Names read from an environment object (`process.env`, a config's `env`, `baseEnv`, …): `env.NAME`, `env?.NAME`,
 * `env["NAME"]`, and the config readers' `reader(env, "NAME", …)`.
 */
function variablesRead(source: string): string[] {
  const patterns = [
    /\b[A-Za-z_]*[eE]nv\??\.([A-Z][A-Z0-9_]+)\b/g,
    /\b[A-Za-z_]*[eE]nv\[\s*"([A-Z][A-Z0-9_]+)"\s*\]/g,
    /\(\s*[A-Za-z_]*[eE]nv\s*,\s*"([A-Z][A-Z0-9_]+)"/g,
  ];
  return patterns.flatMap((re) => [...source.matchAll(re)].map((m) => m[1]!));
}

/** Names given a line of their own, set or commented out: `NAME=value`, `# NAME=value`. */
function exampleVariables(example: string): Set<string> {
  return new Set([...example.matchAll(/^(?:# )?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
}

describe(".env.example", () => {
  const files = productFiles();
  const reads = new Map<string, string[]>();
  for (const file of files) {
    for (const name of variablesRead(readFileSync(join(root, file), "utf8")))
      reads.set(name, [...new Set([...(reads.get(name) ?? []), file])]);
  }
  // The metrics ports' names are built from the components' (platform/metrics.ts).
  for (const replica of COMPONENTS.flatMap(replicasOf))
    reads.set(replicaMetricsPortVariable(replica), ["platform/metrics.ts"]);
  const listed = exampleVariables(readFileSync(join(root, ".env.example"), "utf8"));

  it("finds the product code and what it reads", () => {
    expect(files).toContain("engine/main.ts");
    expect(files).toContain("scripts/start.ts");
    expect(files.some((f) => f.includes("/testing/") || f.endsWith(".test.ts"))).toBe(false);
    expect(reads.get("DATABASE_URL")).toContain("engine/main.ts");
  });

  it("lists every variable the product code reads", () => {
    const missing = [...reads.keys()].filter((name) => !listed.has(name) && !(name in NOT_IN_EXAMPLE));
    expect(missing.map((name) => `${name} (${reads.get(name)!.join(", ")})`)).toEqual([]);
  });

  it("lists only variables something reads, and none of those kept out of it", () => {
    expect([...listed].filter((name) => !reads.has(name))).toEqual([]);
    expect(Object.keys(NOT_IN_EXAMPLE).filter((name) => listed.has(name))).toEqual([]);
    expect(Object.keys(NOT_IN_EXAMPLE).filter((name) => !reads.has(name))).toEqual([]);
  });

  it("finds reads in each form the code uses, and lines set or commented out", () => {
    const source = [
      "const a = process.env.NO_COLOR; env?.TZ; baseEnv.PATH_X;",
      'wholeNumber(env, "ENGINE_TIMEOUT_MS", 5000, 1, 60_000);',
      'wholeNumber(\n    env,\n    "STREAM_PRIVATE_BUFFER_CAP_BYTES",\n    1,\n  );',
      'env["KEY_PREFIX"]; environment.notAVariable; "NOT_READ"; text(options, "NOR_THIS");',
    ].join("\n");
    expect(variablesRead(source).sort()).toEqual(
      ["ENGINE_TIMEOUT_MS", "KEY_PREFIX", "NO_COLOR", "PATH_X", "STREAM_PRIVATE_BUFFER_CAP_BYTES", "TZ"].sort(),
    );
    expect([...exampleVariables("# Prose, AA=1\nBB=\n# CC=x\ndd=1\n#DD=2\n")]).toEqual(["BB", "CC"]);
  });
});
