/**
 * Test support: the OpenAPI document as the app serves it, without Redis, Postgres or an engine. The routes are
 * declared when the app is built, so this builds one on adapters that throw if anything is actually used.
 */
import { createApp } from "../app.ts";
import type { ApiDeps } from "../context.ts";
import { sessionCookieName } from "../middleware.ts";
import { openApiDocument } from "../openapi.ts";

const unused = new Proxy(() => undefined, {
  get: (_, name) => {
    throw new Error(`the document-only app used an adapter (.${String(name)})`);
  },
  apply: () => {
    throw new Error("the document-only app used an adapter");
  },
});

export function documentOnlyDeps(appUrl = "http://localhost:3000"): ApiDeps {
  return {
    redis: unused as never,
    db: unused as never,
    keys: unused as never,
    engine: unused as never,
    sessions: unused as never,
    mailer: unused as never,
    log: unused as never,
    clientIp: unused as never,
    settings: {
      appUrl,
      corsOrigins: [],
      secureCookies: appUrl.startsWith("https:"), // as functions/config.ts decides it, NODE_ENV aside
      tradeRate: { limit: 1, windowMs: 1000 },
      signInPerEmail: { limit: 1, windowMs: 1000 },
      signInPerIp: { limit: 1, windowMs: 1000 },
      signInPerDeployment: { limit: 1, windowMs: 1000 },
      historyRate: { limit: 1, windowMs: 1000 },
      candlesRate: { limit: 1, windowMs: 1000 },
      verifyPerIp: { limit: 1, windowMs: 1000 },
      streamTicketRate: { limit: 1, windowMs: 1000 },
      streamUrl: "ws://localhost:3001/api/v1/stream",
    },
  };
}

/**
 * The OpenAPI document, as served at /api/v1/openapi.json for an API at `serverUrl`; `devMailbox` builds the app
 * as local development does, with the dev mailbox route.
 */
export function apiDocument(
  serverUrl = "http://localhost:3000",
  options: { devMailbox?: boolean } = {},
): Record<string, unknown> {
  const deps = documentOnlyDeps(serverUrl);
  const app = createApp(options.devMailbox === true ? { ...deps, devMailbox: unused as never } : deps);
  return openApiDocument(app, new URL(serverUrl).origin, sessionCookieName(deps.settings));
}

/** Every operation of a document as "METHOD /path". */
export function operationsOf(document: Record<string, unknown>): string[] {
  const paths = document.paths as Record<string, Record<string, unknown>>;
  return Object.entries(paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
}

/** The document with every local `$ref` replaced by what it names, for asserting on the shapes themselves. */
export function dereferenced(document: Record<string, unknown>): Record<string, unknown> {
  const resolve = (pointer: string): unknown =>
    pointer
      .slice(2)
      .split("/")
      .reduce<unknown>(
        (node, key) => (node as Record<string, unknown>)[key.replace(/~1/g, "/").replace(/~0/g, "~")],
        document,
      );
  const inline = (node: unknown, seen: readonly string[]): unknown => {
    if (Array.isArray(node)) return node.map((n) => inline(n, seen));
    if (node === null || typeof node !== "object") return node;
    const ref = (node as { $ref?: unknown }).$ref;
    if (typeof ref === "string" && ref.startsWith("#/")) {
      if (seen.includes(ref)) throw new Error(`recursive $ref ${ref}`);
      return inline(resolve(ref), [...seen, ref]);
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, inline(v, seen)]));
  };
  return inline(document, []) as Record<string, unknown>;
}
