// House rules that the type checker and lint cannot see: no runtime import cycles among the project's modules.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const folders = ["contract", "engine", "functions", "poller", "stream", "worker", "infra", "platform", "scripts"];

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") && !name.endsWith(".test.ts") ? [path] : [];
  });
}

/** Relative imports that exist at run time (`import type` and `export type` are erased). */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const found: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from\s+"(\.[^"]+)"/gms)) {
    if (m[1] === undefined) found.push(resolve(dirname(file), m[2]!));
  }
  return found;
}

describe("module graph", () => {
  it("has no runtime import cycles", () => {
    const files = folders.flatMap((f) => sourceFiles(join(root, f)));
    expect(files.length).toBeGreaterThan(10);
    const graph = new Map(files.map((f) => [f, runtimeImports(f)]));
    const state = new Map<string, "visiting" | "done">();
    const cycles: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(root, f)).join(" → "));
        return;
      }
      state.set(file, "visiting");
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, "done");
    };
    for (const file of files) visit(file, []);
    expect(cycles).toEqual([]);
  });
});
