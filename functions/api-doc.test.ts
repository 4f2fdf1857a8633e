/**
 * docs/api.md is the HTTP contract written for people; the OpenAPI document is generated from the routes. They
 * must not drift: the same operations, every error code with its status, every variable the API reads.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REJECTIONS, type RejectionCode } from "../contract/rejections.ts";
import { makeParams } from "../engine/core/params.ts";
import { IDEMPOTENCY_KEYS_PER_USER, IDEMPOTENCY_TTL_MS } from "./admission.ts";
import { API_ERRORS, rejectionStatus } from "./errors.ts";
import { IDEMPOTENCY_KEY_PATTERN } from "./schemas.ts";
import { apiDocument, operationsOf } from "./testing/document.ts";

const root = resolve(import.meta.dirname, "..");
const apiMd = readFileSync(resolve(root, "docs/api.md"), "utf8");

function section(title: string): string {
  const start = apiMd.indexOf(`\n## ${title}\n`);
  expect(start, `docs/api.md has a "## ${title}" section`).toBeGreaterThan(0);
  const end = apiMd.indexOf("\n## ", start + 1);
  return apiMd.slice(start, end < 0 ? undefined : end);
}

describe("docs/api.md", () => {
  it("documents exactly the operations of the OpenAPI document, each under its own heading", () => {
    const documented = [...section("Endpoints").matchAll(/^### `([A-Z]+) (\/\S*)`$/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(documented.length).toBe(new Set(documented).size);
    expect(documented.sort()).toEqual(operationsOf(apiDocument()).sort());
  });

  it("keeps the dev mailbox out of the contract: described under Development only, absent from the document", () => {
    expect(operationsOf(apiDocument(undefined, { devMailbox: true })).sort()).toEqual(
      operationsOf(apiDocument()).sort(),
    );
    expect(section("Development only")).toContain("`GET /api/v1/dev/mailbox`");
  });

  it("lists every error code the API and the engine answer with, with its status", () => {
    const rows = [...section("Error codes").matchAll(/^\| `([A-Z_]+)` +\| (\d{3}) +\|/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    const expected = [
      ...Object.entries(API_ERRORS).map(([code, e]) => [code, e.status]),
      ...Object.keys(REJECTIONS)
        .filter((code) => !(code in API_ERRORS))
        .map((code) => [code, rejectionStatus(code as RejectionCode)]),
    ];
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(expected));
    expect(rows.length).toBe(expected.length);
  });

  it("gives POST /api/v1/auth every error its OpenAPI operation has, with the status", () => {
    const endpoints = section("Endpoints");
    const start = endpoints.indexOf("\n### `POST /api/v1/auth`\n");
    expect(start).toBeGreaterThan(0);
    const text = endpoints.slice(start, endpoints.indexOf("\n### ", start + 1)).replace(/\s+/g, " ");
    type Responses = Record<string, { content?: { "application/json": { examples?: Record<string, unknown> } } }>;
    const { responses } = (apiDocument() as { paths: Record<string, { post: { responses: Responses } }> }).paths[
      "/api/v1/auth"
    ]!.post;
    const errors = Object.entries(responses).filter(([status]) => Number(status) >= 400 && status !== "500");
    expect(errors.length).toBeGreaterThan(4);
    for (const [status, response] of errors) {
      // INCOMPLETE_BODY: a client that hung up mid-body, which never reads the answer (Conventions).
      const codes = Object.keys(response.content!["application/json"].examples!).filter((c) => c !== "INCOMPLETE_BODY");
      for (const code of codes) expect(text, code).toMatch(new RegExp(`${status} [^;]*\`${code}\``));
    }
  });

  it("states the Idempotency-Key rule the API enforces: printable ASCII without spaces", () => {
    expect(IDEMPOTENCY_KEY_PATTERN.test("a b")).toBe(false);
    expect(IDEMPOTENCY_KEY_PATTERN.test("a-b")).toBe(true);
    expect(section("Idempotency-Key").replace(/\s+/g, " ")).toContain(
      "1–128 printable ASCII characters without spaces",
    );
    expect(API_ERRORS.INVALID_IDEMPOTENCY_KEY.message).toContain("without spaces");
    const create = (apiDocument() as { paths: Record<string, { post: { parameters: { name: string }[] } }> }).paths[
      "/api/v1/trade/create"
    ];
    const header = create?.post.parameters.find((p) => p.name === "Idempotency-Key") as { description?: string };
    expect(header.description).toContain("printable ASCII characters without spaces");
  });

  it("bounds the Idempotency-Key's promise as the API and engine keep it, in docs/api.md and the OpenAPI text", () => {
    const docs = section("Idempotency-Key").replace(/\s+/g, " ");
    const header = (
      apiDocument() as { paths: Record<string, { post: { parameters: { name: string; description?: string }[] } }> }
    ).paths["/api/v1/trade/create"]!.post.parameters.find((p) => p.name === "Idempotency-Key")!.description!;
    const perUser = IDEMPOTENCY_KEYS_PER_USER.toLocaleString("en-US");
    expect(perUser).toBe(makeParams().idempotencyMaxPerUser.toLocaleString("en-US"));
    expect(IDEMPOTENCY_TTL_MS).toBe(makeParams().idempotencyWindowMs);
    for (const text of [docs, header]) {
      expect(text).toContain("24 h");
      expect(text).toContain(`last ${perUser} trade requests`);
      expect(text).toContain(`last ${perUser} keys`);
      expect(text).toMatch(/NO_PRICE`? (and|or) `?STALE_PRICE/);
      expect(text).toMatch(/504 `?ENGINE_TIMEOUT/);
    }
  });

  it("says a trailing stop's bestPrice and level are as of the trade's last output, as the OpenAPI document does", () => {
    const shape = section("Endpoints")
      .match(/^- \*\*TrailingStop\*\* = [^]*?(?=^- )/m)?.[0]
      .replace(/\s+/g, " ");
    expect(shape).toContain("**as of the trade's last output** (its opening or fill, the stop's activation, a modify");
    expect(shape).toContain("[trading-rules.md](trading-rules.md#trailing-stops)");
    expect(shape).not.toMatch(/fires now/);
    const components = (apiDocument() as { components: { schemas: Record<string, { description?: string }> } })
      .components.schemas;
    expect(components.TrailingStop?.description).toContain("as of the trade's last output (its opening or fill");
    expect(components.TrailingStop?.description).toContain("docs/trading-rules.md, Trailing stops");
  });

  it("describes every environment variable the API reads", () => {
    const config = readFileSync(resolve(root, "functions/config.ts"), "utf8");
    const read = new Set(
      [
        ...config.matchAll(/\b(?:url|text|wholeNumber|oneOf)\(env, "([A-Z][A-Z0-9_]*)"/g),
        ...config.matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g),
      ].map((m) => m[1]!),
    );
    expect(read.size).toBeGreaterThan(10);
    const table = section("Configuration (environment)");
    for (const variable of read) expect(table, variable).toContain(`\`${variable}\``);
  });
});
