/**
 * Test support: the installed @redocly/cli, run on an OpenAPI document. `lintDocument` lints it with a given
 * redocly.yaml (and findings accepted on purpose); `answersOffDocument` checks real answers against the
 * document's response schemas, through Redocly's own JSON Schema 2020-12 validator (the dialect of OpenAPI 3.1).
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const REDOCLY = resolve(import.meta.dirname, "../../node_modules/.bin/redocly");

export interface LintReport {
  readonly exitCode: number;
  readonly totals: { errors: number; warnings: number; ignored: number } | undefined;
  /** Each finding as "rule at pointer: message". */
  readonly problems: string[];
  readonly ruleIds: string[];
}

/** Lints `document` with `config` (a redocly.yaml) and an ignore file of `ignored` (rule → JSON pointers). */
export async function lintDocument(
  document: Record<string, unknown>,
  config: string,
  ignored: Record<string, string[]> = {},
): Promise<LintReport> {
  const dir = await mkdtemp(join(tmpdir(), "openapi-lint-"));
  try {
    await writeFile(join(dir, "openapi.json"), JSON.stringify(document, null, 2));
    await writeFile(join(dir, "redocly.yaml"), config);
    if (Object.keys(ignored).length > 0) {
      await writeFile(
        join(dir, ".redocly.lint-ignore.yaml"),
        `openapi.json:\n${Object.entries(ignored)
          .map(([rule, pointers]) => `  ${rule}:\n${pointers.map((p) => `    - '${p}'`).join("\n")}`)
          .join("\n")}\n`,
      );
    }
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
    const problems = report.problems ?? [];
    return {
      exitCode: "code" in run && typeof run.code === "number" ? run.code : 0,
      totals: report.totals,
      problems: problems.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`),
      ruleIds: problems.map((p) => p.ruleId),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Answer {
  /** As in the document: "POST /api/v1/trade/close". */
  readonly operation: string;
  readonly status: number;
  /** Names the answer in what the check reports. */
  readonly name: string;
  readonly body: unknown;
}

/**
 * What in `answers` the document's response schemas refuse, as "rule at pointer: message"; empty when each answer
 * matches the JSON schema of its operation and status. Each answer becomes a named example of that response, and
 * the document is linted for examples only, additional properties refused.
 */
export async function answersOffDocument(
  document: Record<string, unknown>,
  answers: readonly Answer[],
): Promise<string[]> {
  const copy = structuredClone(document) as {
    paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, JsonMedia> }> }>>;
  };
  for (const { operation, status, name, body } of answers) {
    const [method, path] = operation.split(" ") as [string, string];
    const media = copy.paths[path]?.[method.toLowerCase()]?.responses[String(status)]?.content?.["application/json"];
    if (media === undefined) throw new Error(`the document has no JSON ${status} answer for ${operation}`);
    delete media.example;
    media.examples = { ...media.examples, [name]: { value: body } };
  }
  const config =
    "rules:\n  no-invalid-media-type-examples:\n    severity: error\n    allowAdditionalProperties: false\n";
  const report = await lintDocument(copy, config);
  if (report.totals === undefined) throw new Error("redocly lint gave no report");
  return report.problems.filter((p) => p.startsWith("no-invalid-media-type-examples "));
}

interface JsonMedia {
  example?: unknown;
  examples?: Record<string, unknown>;
}
