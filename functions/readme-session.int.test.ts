/**
 * The README's curl session (The API) runs as written: its `sh` block, with the API's address put in for
 * http://localhost:3000, in bash with curl and node, against the API over HTTP (real Redis and Postgres, the engine
 * and worker in this process), and the README's way to read the session token from the cookie jar.
 */
import { serve, type ServerType } from "@hono/node-server";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Hono } from "hono";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ApiEnv } from "./context.ts";
import { client } from "./testing/http.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";

const run = promisify(execFile);
let stack: ApiStack;
let server: ServerType;
let dir: string;

beforeAll(async () => {
  // The port comes first: the sign-in link in the mailbox is on APP_URL.
  const target: { app?: Hono<ApiEnv> } = {};
  server = serve({ fetch: (req) => target.app!.fetch(req), port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((r) => server.once("listening", () => r()));
  const port = (server.address() as AddressInfo).port;
  stack = await startApiStack({ settings: { appUrl: `http://127.0.0.1:${port}` } });
  target.app = stack.app;
  await stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  dir = await mkdtemp(join(tmpdir(), "readme-session-"));
}, 60_000);

afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await stack?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

it("signs in, opens a trade, closes it by the id it captured, reads the balance; the jar gives the token", async () => {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const session = /A session with curl[^\n]*\n+```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(session, "the README's curl session").toBeDefined();
  const { settings } = stack.deps;
  const script = `set -euo pipefail\n${session!.replaceAll("http://localhost:3000", settings.appUrl)}`;
  const { stdout } = await run("bash", ["-c", script], { cwd: dir });
  expect(stdout).not.toContain('"error"');
  expect(stdout).toMatch(/"closeReason":"manual"/);
  expect(stdout).toMatch(/\{"balances":\{[^}]*\}\}$/);

  const tokenCommand = /`(awk [^`]*jar)`/.exec(readme)?.[1];
  expect(tokenCommand, "the README's command that reads the token from the jar").toBeDefined();
  const token = (await run("bash", ["-c", tokenCommand!], { cwd: dir })).stdout.trim();
  const signedIn = client(stack.app, token);
  expect((await signedIn.get("/api/v1/trade/open")).body).toEqual({ trades: [] });
  const history = (await signedIn.get("/api/v1/trade/history")).body as { trades: { asset: string }[] };
  expect(history.trades.map((trade) => trade.asset)).toEqual(["ETH"]);
  // Its two trade POSTs each sent an Idempotency-Key, as docs/api.md asks of every trade POST: the pattern a
  // newcomer copies into a script, where a 504 retried without one opens a second trade.
  const { user } = (await signedIn.get("/api/v1/auth/me")).body as { user: { id: string } };
  expect(await stack.redis.hlen(stack.keys.idempotencyRecords(user.id))).toBe(2);
});
