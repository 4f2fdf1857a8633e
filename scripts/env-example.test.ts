// .env.example lists every variable the processes read: each name the product code reads from an environment is
// there, or below with the reason it is not, and each name there is read somewhere. And the range of each whole number
// a process reads (wholeNumber(env, "NAME", fallback, min, max)) is the one .env.example and the docs' tables give.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMPONENTS, replicasOf } from "../platform/components.ts";
import { metricsPortVariable, replicaMetricsConfig, replicaMetricsPortVariable } from "../platform/metrics.ts";
import { REPO_ROOT as root, repositoryFiles } from "./repository-files.ts";

/** Read by product code but not the processes' configuration, so not in .env.example. */
const NOT_IN_EXAMPLE: Readonly<Record<string, string>> = {
  PATH: "the system's: where redis-server and Postgres's binaries are found",
  TZ: "the system's: passed on to the Postgres that npm start runs",
  LOCAL_POSTGRES_PROBE_URL: "the tests' only (prefer: running): platform/testing/global-setup.ts",
  API_DOMAIN: "`sst deploy`'s environment, not a process's: infra/README.md",
  STREAM_DOMAIN: "`sst deploy`'s environment, not a process's: infra/README.md",
  METRICS_PORT_VARIABLE: "npm start's, set for each child: the variable its metrics port came from, for messages",
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

/** The variables .env.example sets (`NAME=value`, not commented out), as a process reads the file copied to .env. */
function exampleValues(example: string): Record<string, string> {
  return Object.fromEntries([...example.matchAll(/^([A-Z][A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
}

describe(".env.example's metrics ports", () => {
  // Copied to .env and then edited, the file is what the processes read: a replica's own port set there would keep it
  // on that port whatever its component's variable says (replicaMetricsConfig), which unset does not.
  it("leave every replica to its component's variable when that says off or 0, as unset does", () => {
    const env = exampleValues(readFileSync(join(root, ".env.example"), "utf8"));
    for (const replica of COMPONENTS.flatMap(replicasOf)) {
      const variable = metricsPortVariable(replica.component.name);
      expect(replicaMetricsConfig({ ...env, [variable]: "off" }, replica).port, `${replica.name}, off`).toBeUndefined();
      expect(replicaMetricsConfig({ ...env, [variable]: "0" }, replica).port, `${replica.name}, 0`).toBe(0);
    }
  });
});

/** Tables of variables without a Range column, and why. */
const TABLES_WITHOUT_RANGES: Readonly<Record<string, string>> = {
  "README.md":
    "a short list of the variables most often set, kept under README's size limit; it points to .env.example",
};

/** Files that read a whole number with a range of their own, not a process's. */
const RANGES_NOT_THE_PROCESSES: Readonly<Record<string, string>> = {
  "infra/deploy-settings.ts":
    "`sst deploy` checks ENGINE_TIMEOUT_MS against the functions' timeout before passing it on",
};

interface RangeRead {
  readonly name: string;
  /** As written in the code; undefined when it is not a number this test can read. */
  readonly min: number | undefined;
  readonly max: number | undefined;
}

/** The whole numbers read in `source` with their range: `wholeNumber(env, "NAME", fallback, min, max)`. */
function rangesRead(source: string): RangeRead[] {
  const reads: RangeRead[] = [];
  for (const call of source.matchAll(/\bwholeNumber\(/g)) {
    const args = topLevelArguments(source, call.index + call[0].length);
    const name = /^"([A-Z][A-Z0-9_]+)"$/.exec(args[1] ?? "")?.[1];
    if (name !== undefined) reads.push({ name, min: numberIn(args[3]), max: numberIn(args[4]) });
  }
  return reads;
}

/** A call's arguments, from just after its "(" to the ")" that closes it, split at the commas outside brackets. */
function topLevelArguments(source: string, from: number): string[] {
  const args: string[] = [];
  let depth = 0;
  let start = from;
  for (let i = from; i < source.length; i++) {
    const c = source[i]!;
    if ("([{".includes(c)) depth++;
    else if (")]}".includes(c) && depth > 0) depth--;
    else if ((c === "," || c === ")") && depth === 0) {
      args.push(source.slice(start, i).trim());
      start = i + 1;
      if (c === ")") break;
    }
  }
  return args.filter((a) => a !== "");
}

/** A literal as the readers write them: `10_000`, `7 * 24 * 3_600_000`, `1 << 30`. */
function numberIn(expression: string | undefined): number | undefined {
  if (expression === undefined) return undefined;
  const factors = expression.replaceAll("_", "").split("*");
  let product = 1;
  for (const factor of factors) {
    const m = /^\s*(\d+)(?:\s*<<\s*(\d+))?\s*$/.exec(factor);
    if (m === null) return undefined;
    product *= Number(m[1]) * 2 ** Number(m[2] ?? 0);
  }
  return product;
}

/** What .env.example says above `name`: the comment lines just above it, or above the run of variables it ends. */
function commentAbove(example: string, name: string): string {
  const lines = example.split("\n");
  let i = lines.findIndex((line) => new RegExp(`^(?:# )?${name}=`).test(line));
  if (i < 0) return "";
  while (i > 0 && /^(?:# )?[A-Z][A-Z0-9_]+=/.test(lines[i - 1]!)) i--;
  const comment: string[] = [];
  while (i > 0 && lines[i - 1]!.startsWith("#") && !/^# [A-Z][A-Z0-9_]+=/.test(lines[i - 1]!))
    comment.unshift(lines[--i]!.replace(/^# ?/, ""));
  return comment.join(" ");
}

/** The "from MIN to MAX" ranges in a text, as "MIN–MAX". */
function rangesStated(text: string): string[] {
  return [...text.matchAll(/\bfrom (\d[\d,]*) to (\d[\d,]*)\b/gi)].map((m) => `${m[1]}–${m[2]}`.replaceAll(",", ""));
}

interface TableRow {
  readonly file: string;
  readonly names: string[];
  /** The row's Range cell, commas dropped; undefined when its table has no Range column. */
  readonly range: string | undefined;
}

/** The rows of every Markdown table with a Variable column: the variables in that cell and the Range cell. */
function variableTableRows(file: string, markdown: string): TableRow[] {
  const rows: TableRow[] = [];
  let header: string[] | undefined;
  for (const line of markdown.split("\n")) {
    if (!line.startsWith("|")) {
      header = undefined;
      continue;
    }
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim());
    if (header === undefined) header = cells;
    else if (!cells.every((c) => /^:?-+:?$/.test(c)) && header.includes("Variable")) {
      const rangeAt = header.indexOf("Range");
      rows.push({
        file,
        names: [...cells[header.indexOf("Variable")]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!),
        range: rangeAt < 0 ? undefined : cells[rangeAt]!.replaceAll(",", ""),
      });
    }
  }
  return rows;
}

describe("the ranges of whole numbers", () => {
  const ranges = new Map<string, { min: number | undefined; max: number | undefined; file: string }[]>();
  for (const file of productFiles().filter((f) => !(f in RANGES_NOT_THE_PROCESSES))) {
    for (const read of rangesRead(readFileSync(join(root, file), "utf8")))
      ranges.set(read.name, [...(ranges.get(read.name) ?? []), { min: read.min, max: read.max, file }]);
  }
  /** NAME → "MIN–MAX", as the code reads it. */
  const range = new Map([...ranges].map(([name, [first]]) => [name, `${first!.min}–${first!.max}`]));
  const example = readFileSync(join(root, ".env.example"), "utf8");

  it("finds the readers, with one range for each variable wherever it is read", () => {
    expect(range.get("ENGINE_LEASE_TTL_MS")).toBe("200–60000");
    expect(range.get("STREAM_PRIVATE_BUFFER_CAP_BYTES")).toBe(`16384–${2 ** 30}`);
    expect(range.get("WORKER_OUTPUT_KEEP_MS")).toBe(`0–${7 * 24 * 3_600_000}`);
    expect(
      ranges
        .get("STREAM_PORT")!
        .map((r) => r.file)
        .sort(),
    ).toEqual(["functions/config.ts", "stream/config.ts"]);
    const unread = [...ranges].filter(([, reads]) => reads.some((r) => r.min === undefined || r.max === undefined));
    expect(unread.map(([name, reads]) => `${name} (${reads.map((r) => r.file).join(", ")})`)).toEqual([]);
    const differing = [...ranges].filter(([, reads]) => new Set(reads.map((r) => `${r.min}–${r.max}`)).size > 1);
    expect(differing.map(([name, reads]) => [name, reads.map((r) => `${r.file}: ${r.min}–${r.max}`)])).toEqual([]);
    expect(Object.keys(RANGES_NOT_THE_PROCESSES).filter((f) => !repositoryFiles().includes(f))).toEqual([]);
  });

  it(".env.example gives each its range, in the comment above it", () => {
    const wrong = [...range]
      .map(([name, expected]) => ({ name, expected, stated: rangesStated(commentAbove(example, name)) }))
      .filter(({ expected, stated }) => stated.length !== 1 || stated[0] !== expected);
    expect(wrong).toEqual([]);
  });

  it("every table of variables in the Markdown files gives each its range, in a Range column", () => {
    const docs = repositoryFiles().filter((f) => f.endsWith(".md"));
    expect(Object.keys(TABLES_WITHOUT_RANGES).filter((file) => !docs.includes(file))).toEqual([]);
    const rows = docs.flatMap((file) => variableTableRows(file, readFileSync(join(root, file), "utf8")));
    expect(rows.filter((r) => r.names.includes("ENGINE_LEASE_TTL_MS")).map((r) => r.file)).toContain("docs/api.md");
    const wrong = rows
      .filter((row) => row.range !== undefined || !(row.file in TABLES_WITHOUT_RANGES))
      .flatMap((row) =>
        row.names
          .filter((name) => range.has(name) && row.range !== range.get(name))
          .map((name) => ({ file: row.file, name, documented: row.range ?? "no Range column", code: range.get(name) })),
      );
    expect(wrong).toEqual([]);
  });

  it("reads a reader's range, and the range in a comment and a table", () => {
    const source = [
      'wholeNumber(env, "A_MS", 10_000, 100, 3_600_000);',
      'wholeNumber(\n    env,\n    "B_BYTES",\n    LIMITS.b,\n    16_384,\n    1 << 30,\n  );',
      'wholeNumber(env, "C_MS", Math.min(5_000, other), 0, 7 * 24 * 3_600_000);',
      'wholeNumber(env, "D_MS", 1, LOW, 9); wholeNumber(env: Env, name: string, fallback: number);',
    ].join("\n");
    expect(rangesRead(source)).toEqual([
      { name: "A_MS", min: 100, max: 3_600_000 },
      { name: "B_BYTES", min: 16_384, max: 2 ** 30 },
      { name: "C_MS", min: 0, max: 604_800_000 },
      { name: "D_MS", min: undefined, max: 9 },
    ]);
    const env = "# Engine.\nXX=1\n\n# How often, from 5 to\n# 1000 ms.\nAA=1\nBB=2\n# CC: From 1 to 1,000.\nCC=3\n";
    expect(["XX", "AA", "BB", "CC"].map((n) => rangesStated(commentAbove(env, n)))).toEqual([
      [],
      ["5–1000"],
      ["5–1000"],
      ["1–1000"],
    ]);
    const table =
      "| Variable | Range |\n| --- | --- |\n| `AA`, `BB` | 1–1,000 |\n| `CC` \\| x | |\n\n" +
      "| Variable | Default |\n| - | - |\n| `DD` | 1 |\n";
    expect(variableTableRows("x.md", table)).toEqual([
      { file: "x.md", names: ["AA", "BB"], range: "1–1000" },
      { file: "x.md", names: ["CC"], range: "" },
      { file: "x.md", names: ["DD"], range: undefined },
    ]);
  });
});
