/**
 * The OpenAPI document passes Redocly's `recommended` ruleset with no error and no warning: every operation has an
 * operationId, a summary, a 4xx response, security declared, examples that match their schemas, and so on.
 * Runs the installed @redocly/cli on the document as the deployed API serves it.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiDocument } from "./testing/document.ts";

const REDOCLY = resolve(import.meta.dirname, "../node_modules/.bin/redocly");

/**
 * Findings accepted on purpose, each with its reason. GET /health and GET /api/v1/market/quotes have no 4xx: they
 * take no input and need no session, so nothing a client sends can be refused; their only failure is the 503 of a
 * backing service.
 */
const IGNORED = {
  "operation-4xx-response": ["#/paths/~1health/get/responses", "#/paths/~1api~1v1~1market~1quotes/get/responses"],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "openapi-lint-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("the OpenAPI document under @redocly/cli lint", () => {
  it("has no error and no warning with the recommended rules", { timeout: 60_000 }, async () => {
    // As deployed (a localhost server URL is only what a local run serves, and the linter rightly flags it).
    await writeFile(
      join(dir, "openapi.json"),
      JSON.stringify(apiDocument("https://abc123.execute-api.eu-west-1.amazonaws.com"), null, 2),
    );
    await writeFile(join(dir, "redocly.yaml"), "extends:\n  - recommended\n");
    await writeFile(
      join(dir, ".redocly.lint-ignore.yaml"),
      `openapi.json:\n${Object.entries(IGNORED)
        .map(([rule, pointers]) => `  ${rule}:\n${pointers.map((p) => `    - '${p}'`).join("\n")}`)
        .join("\n")}\n`,
    );
    const run = await promisify(execFile)(REDOCLY, ["lint", "--format=json", "openapi.json"], {
      cwd: dir,
      // No telemetry, no update check: the machine reaches no network but npm.
      env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", CI: "true" },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { code?: number; stdout?: string; stderr?: string }) => err);
    const report = JSON.parse(run.stdout ?? "{}") as {
      totals?: { errors: number; warnings: number; ignored: number };
      problems?: { ruleId: string; message: string; location: { pointer: string }[] }[];
    };
    const problems = (report.problems ?? []).map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
    expect(problems).toEqual([]);
    expect(report.totals).toEqual({ errors: 0, warnings: 0, ignored: Object.values(IGNORED).flat().length });
    expect("code" in run ? run.code : 0).toBe(0);
  });
});
