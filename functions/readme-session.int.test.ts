/**
 * The curl sessions a newcomer copies run as written, in bash with curl and node, against the API over HTTP (real
 * Redis and Postgres, the engine and worker in this process), with the API's address put in for
 * http://localhost:3000:
 * - the README's (The API), and the README's way to read the session token from the cookie jar;
 * - docs/cookbook.md's `sh` blocks, in order in one shell, with the stream served too (its address put in for
 *   ws://localhost:3001): each block's answers have the status and fields of the `json` block after it.
 * Both paste into interactive zsh too (macOS's shell), so their `sh` blocks hold no comment, and both leave no file in
 * the folder they run in (the cookie jar holds a live session token).
 * Someone else asks for a sign-in link just after each session does, as on a shared dev machine: the session must
 * follow the link sent to its own address.
 */
import { serve, type ServerType } from "@hono/node-server";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Hono } from "hono";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { freePort, REPO_ROOT } from "../platform/testing/processes.ts";
import { DEFAULT_LIMITS } from "../stream/config.ts";
import { NO_METRICS } from "../stream/metrics.ts";
import { startStream, type RunningStream } from "../stream/stream.ts";
import type { ApiEnv, ApiSettings } from "./context.ts";
import { client } from "./testing/http.ts";
import { REDIS_URL, startApiStack, type ApiStack } from "./testing/api-stack.ts";
import { conformsTo, docSession, fences, jsonValues, shellComments, type DocBlock } from "./testing/doc-session.ts";

const run = promisify(execFile);

interface Served {
  readonly stack: ApiStack;
  readonly appUrl: string;
  close(): Promise<void>;
}

/**
 * The API stack served over HTTP. After each sign-in request is answered, other@example.com asks for a link too, so
 * the newest email in the dev mailbox is never the one the session asked for.
 */
async function serveStack(settings: Partial<ApiSettings> = {}): Promise<Served> {
  // The port comes first: the sign-in link in the mailbox is on APP_URL.
  const target: { app?: Hono<ApiEnv> } = {};
  const fetch = async (req: Request) => {
    const answer = await target.app!.fetch(req);
    if (req.method === "POST" && new URL(req.url).pathname === "/api/v1/auth") {
      const other = await client(target.app!).post("/api/v1/auth", { email: " Other@Example.com " });
      expect(other.status).toBe(200);
    }
    return answer;
  };
  const server: ServerType = serve({ fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((r) => server.once("listening", () => r()));
  const appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const stack = await startApiStack({ settings: { appUrl, ...settings } });
  target.app = stack.app;
  return {
    stack,
    appUrl,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await stack.close();
    },
  };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "readme-session-"));
});
afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("the README's session", () => {
  let served: Served;
  beforeAll(async () => {
    served = await serveStack();
    await served.stack.setQuote("ETH_USDC_PERP", "2000", "2001");
  }, 60_000);
  afterAll(async () => served?.close());

  it("signs in, opens a trade, closes it by the id it captured, reads the balance; the jar gives the token", async () => {
    const { stack, appUrl } = served;
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    // Its one block of commands to the API, fenced sh in column 0: one fenced otherwise would not be run here.
    const commands = fences(readme).filter((fence) => /\bcurl\b|\$API\b/.test(fence.code));
    expect(
      commands.map((fence) => `${fence.indent}${fence.lang}`),
      "the README's blocks of curl commands",
    ).toEqual(["sh"]);
    const session = commands[0]!.code;
    // Pasted into zsh, macOS's shell, a comment breaks the line it is on (shellComments).
    const shellBlocks = fences(readme).filter((fence) => /^(sh|bash|shell|zsh|console)$/.test(fence.lang));
    expect(
      shellBlocks.flatMap((fence) => shellComments(fence.code)),
      "comments in the README's sh blocks",
    ).toEqual([]);
    const tokenCommand = /`(awk [^`]*jar)`/.exec(readme)?.[1];
    expect(tokenCommand, "the README's command that reads the token from the jar").toBeDefined();
    // The token command runs in the same shell, after the session: the jar's folder is the session's.
    const script = `set -euo pipefail\n${session.replaceAll("http://localhost:3000", appUrl)}\necho\n${tokenCommand!}`;
    // Run in a folder of its own, with mktemp's folders under the test's, removed after it.
    const cwd = await mkdtemp(join(dir, "readme-"));
    const { stdout: printed } = await run("bash", ["-c", script], { cwd, env: { ...process.env, TMPDIR: dir } });
    const stdout = printed.trimEnd().split("\n").slice(0, -1).join("\n").trimEnd();
    const token = printed.trimEnd().split("\n").at(-1)!;
    expect(stdout).not.toContain('"error"');
    expect(stdout).toMatch(/"closeReason":"manual"/);
    expect(stdout).toMatch(/\{"balances":\{[^}]*\}\}$/);
    // Nothing in the folder it ran in: a jar there holds a live session token, one `git add .` from a commit.
    expect(await readdir(cwd), "files the session left in its folder").toEqual([]);

    const signedIn = client(stack.app, token);
    expect((await signedIn.get("/api/v1/auth/me")).body).toMatchObject({ user: { email: "me@example.com" } });
    // The newest email was someone else's, to the address as they typed it, trimmed and lower-cased.
    const mailbox = await stack.deps.devMailbox!.list(20);
    expect(mailbox.map((mail) => mail.to)).toEqual(["other@example.com", "me@example.com"]);
    expect((await signedIn.get("/api/v1/trade/open")).body).toEqual({ trades: [] });
    const history = (await signedIn.get("/api/v1/trade/history")).body as { trades: { asset: string }[] };
    expect(history.trades.map((trade) => trade.asset)).toEqual(["ETH"]);
    // Its two trade POSTs each sent an Idempotency-Key, as docs/api.md asks of every trade POST: the pattern a
    // newcomer copies into a script, where a 504 retried without one opens a second trade.
    const { user } = (await signedIn.get("/api/v1/auth/me")).body as { user: { id: string } };
    expect(await stack.redis.hlen(stack.keys.idempotencyRecords(user.id))).toBe(2);
  });
});

describe("docs/cookbook.md", () => {
  let served: Served;
  let stream: RunningStream;
  let streamBase: string;
  beforeAll(async () => {
    // The stream's port comes first too: POST /stream/ticket answers with its URL.
    streamBase = `ws://127.0.0.1:${await freePort()}`;
    served = await serveStack({ streamUrl: `${streamBase}/api/v1/stream` });
    const { stack, appUrl } = served;
    // Every market quoted, as under `npm start`; ETH at the prices the page's answers come with.
    await stack.setQuote("ETH_USDC_PERP", "4300", "4300.5");
    await stack.setQuote("BTC_USDC_PERP", "96999", "97001");
    await stack.setQuote("SOL_USDC_PERP", "199.99", "200.01");
    await stack.setQuote("ADA_USDC_PERP", "0.8999", "0.9001");
    stream = await startStream({
      redis: stack.redis,
      reader: new Redis(REDIS_URL, { maxRetriesPerRequest: null }),
      keys: stack.keys,
      log: createLogger("cookbook-stream", { level: "warn", sink: () => {} }),
      metrics: NO_METRICS,
      limits: DEFAULT_LIMITS,
      allowedOrigins: new Set([appUrl]),
      port: Number(new URL(streamBase).port),
      host: "127.0.0.1",
    });
  }, 60_000);
  afterAll(async () => {
    await stream?.close();
    await served?.close();
  });

  it("runs every block in order; each answer has the status and the fields shown after it", async () => {
    const doc = (await readFile(new URL("../docs/cookbook.md", import.meta.url), "utf8"))
      .replaceAll("http://localhost:3000", served.appUrl)
      .replaceAll("ws://localhost:3001", streamBase);
    const session = docSession(doc);
    expect(session.length, "sh blocks in the cookbook").toBeGreaterThan(10);
    // `ws` resolves from the repository's node_modules, as it does for a reader in the repository's folder.
    const env = { ...process.env, NODE_PATH: join(REPO_ROOT, "node_modules"), TMPDIR: dir };
    const cookbookDir = await mkdtemp(join(dir, "cookbook-"));
    const { stdout, stderr } = await run("bash", ["-c", session.script], { cwd: cookbookDir, env, timeout: 60_000 });
    const answers = session.answers(stdout, stderr);

    const problems: string[] = [...session.problems];
    const left = await readdir(cookbookDir);
    if (left.length > 0) problems.push(`the blocks left files in their folder: ${left.join(", ")}`);
    session.blocks.forEach((block: DocBlock, i) => {
      const got = answers[i]!;
      const where = `block ${i + 1} (${block.heading}, line ${block.line})`;
      for (const line of shellComments(block.code)) problems.push(`${where}: a comment, which zsh runs: ${line}`);
      if (got.noise.length > 0) problems.push(`${where}: printed ${JSON.stringify(got.noise)}`);
      const shown = block.shown === undefined ? [] : jsonValues(block.shown);
      if (got.values.length !== shown.length) {
        problems.push(`${where}: printed ${got.values.length} answers, the doc shows ${shown.length}`);
        return;
      }
      // An HTTP answer is shown after its status; a block that sent no request (the WebSocket's) shows none.
      if (got.statuses.length > 0 && shown.some((answer) => answer.status === undefined)) {
        problems.push(`${where}: an answer is shown without its status`);
      }
      // Each status the doc shows, in order, among the block's requests; every other request succeeded.
      const statuses = [...got.statuses];
      shown.forEach((answer, j) => {
        if (answer.status !== undefined) {
          const at = statuses.indexOf(answer.status);
          if (at === -1)
            problems.push(`${where}: answer ${j + 1} is shown ${answer.status}, got ${got.statuses.join(", ")}`);
          else statuses.splice(0, at + 1);
        }
        problems.push(...conformsTo(answer.value, got.values[j]).map((p) => `${where}, answer ${j + 1}: ${p}`));
        // Answers shown alike (a retry's) are the same answer, times and all.
        const alike = shown.findIndex((other) => JSON.stringify(other.value) === JSON.stringify(answer.value));
        if (alike < j && JSON.stringify(got.values[alike]) !== JSON.stringify(got.values[j])) {
          problems.push(`${where}: answers ${alike + 1} and ${j + 1} are shown alike but differ`);
        }
      });
      const failed = got.statuses.filter((s) => s >= 400 && !shown.some((a) => a.status === s));
      if (failed.length > 0) problems.push(`${where}: requests failed (${failed.join(", ")}): ${got.raw}`);
    });
    expect(problems, stdout).toEqual([]);
  }, 60_000);
});
