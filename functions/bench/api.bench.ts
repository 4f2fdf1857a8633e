/**
 * HTTP benchmark: `npm run bench:api` (needs Redis and Postgres, ~30 s). Prints a table, then one JSON line with
 * the figures. Everything runs through the real processes: the engine (`engine/main.ts`), the worker
 * (`worker/main.ts`) and the API (`functions/server.ts`) on a fresh test database and a unique KEY_PREFIX, all
 * removed at the end. The load generator shares the machine with them.
 *
 * 1. Sign BENCH_CLIENTS users (default 50) in through the real magic-link flow (POST /auth, the dev mailbox, the
 *    verify link); each client then sends `Authorization: Bearer` on its own keep-alive connection.
 * 2. A round trip is POST /trade/create (a small ETH long) then POST /trade/close of that trade: HTTP → Redis →
 *    engine → worker → HTTP, twice. Each POST is one order and one latency sample.
 * 3. Phases: a warm-up, 1 client in a loop, then every client at once. A client starts no new round trip once its
 *    phase's time is up; the phase lasts until the last one has finished, and orders/s is over that time.
 * 4. Correctness: every POST answered 2xx (anything else is counted per phase and printed; the JSON's `errors` is
 *    the total, warm-up included), and no user has an open trade left; either failing makes the exit code 1.
 *
 * 5. Redis commands, counted with MONITOR after the timed phases (it slows Redis, so it never runs during them):
 *    top-level commands carrying this run's key prefix (a script counts once, its inner calls not at all), by the
 *    process that sent them, over a short window each at 1 client, at every client, with the system idle, and
 *    while price ticks alone flow (TICKS_PER_SEC): per order, per second idle, and per tick.
 *
 * BENCH_REDIS=upstash runs the API on its Upstash REST adapter, through the local Upstash REST peer
 * (functions/testing/upstash-bridge.ts, in a process of its own: upstash-peer.ts) with BENCH_UPSTASH_DELAY_MS
 * (default 3) added to each request as a network round trip; the peer's own count of the API's commands per order
 * is then reported for the timed phases too. UPSTASH_POLL_MIN_MS / UPSTASH_POLL_MAX_MS pass through to the API.
 *
 * The ETH quote is re-posted every QUOTE_EVERY_MS: the engine refuses orders on a quote older than 30 s of log time.
 * BENCH_CPU_PROF_DIR=dir starts the three processes with `--cpu-prof` into that folder (written when they stop).
 */
import { fork, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { Agent, request, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { Redis } from "ioredis";
import type { PriceUpdate } from "../../contract/messages.ts";
import { keyspace } from "../../contract/names.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { freePort, spawnComponent, type Child } from "../../platform/testing/processes.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import type { PeerMessage } from "./upstash-peer.ts";

const REDIS_URL = TEST_REDIS_URL;
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3) * 1000;
const AT_1_MS = Number(process.env.BENCH_SECONDS_AT_1 ?? 5) * 1000;
const AT_N_MS = Number(process.env.BENCH_SECONDS_AT_N ?? 10) * 1000;
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR;
const VIA = process.env.BENCH_REDIS === "upstash" ? "upstash" : "tcp";
if (process.env.BENCH_REDIS !== undefined && process.env.BENCH_REDIS !== VIA)
  throw new Error(`BENCH_REDIS: expected "tcp" or "upstash", received "${process.env.BENCH_REDIS}"`);
const UPSTASH_DELAY_MS = Number(process.env.BENCH_UPSTASH_DELAY_MS ?? 3);
const COUNT_WINDOW_MS = 2_000;
const TICKS_PER_SEC = 100;
const HOST = "127.0.0.1";
const JWT_SECRET = "bench-secret-that-is-long-enough-0123456789";
const QUOTE_EVERY_MS = 2_000;
const MARKET = "ETH_USDC_PERP";
const BID = "2000";
const ASK = "2000.5";
const CREATE_BODY = JSON.stringify({ asset: "ETH", type: "long", margin: "10", leverage: 2 });
/** The trade's id is the first "id" in a create answer (`{"trade":{"id":"T0-1",…}}`): no JSON.parse per order. */
const TRADE_ID = /"id":"([^"]+)"/;

interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: IncomingHttpHeaders;
}

/** One POST/GET on `agent`; network errors resolve as status 0 so a client loop never throws. */
function send(
  port: number,
  agent: Agent,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Reply> {
  return new Promise((resolve) => {
    const sized = body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) };
    const req = request({ host: HOST, port, method, path, agent, headers: sized }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
      res.on("error", (err) => resolve({ status: 0, body: String(err), headers: {} }));
    });
    req.on("error", (err) => resolve({ status: 0, body: String(err), headers: {} }));
    req.end(body);
  });
}

interface Client {
  readonly agent: Agent;
  readonly headers: Record<string, string>;
  readonly email: string;
}

/** Latencies and failures of one phase. */
class Phase {
  readonly samples: number[] = [];
  readonly failures = new Map<string, number>();
  elapsedMs = 0;
  /** Commands the API sent, as the Upstash peer counted them (BENCH_REDIS=upstash only). */
  apiCommands: number | undefined;
  constructor(
    readonly name: string,
    readonly clients: number,
  ) {}

  record(ms: number, path: string, reply: Reply, ok: number): void {
    this.samples.push(ms);
    if (reply.status === ok) return;
    const what = `${reply.status} ${path} ${reply.body.slice(0, 160)}`;
    this.failures.set(what, (this.failures.get(what) ?? 0) + 1);
  }

  get errors(): number {
    let n = 0;
    for (const count of this.failures.values()) n += count;
    return n;
  }
}

async function roundTrips(port: number, client: Client, phase: Phase, untilMs: number): Promise<void> {
  while (performance.now() < untilMs) {
    let t = performance.now();
    const opened = await send(port, client.agent, "POST", "/api/v1/trade/create", client.headers, CREATE_BODY);
    phase.record(performance.now() - t, "create", opened, 201);
    const id = opened.status === 201 ? TRADE_ID.exec(opened.body)?.[1] : undefined;
    if (id === undefined) continue;
    t = performance.now();
    const closed = await send(port, client.agent, "POST", "/api/v1/trade/close", client.headers, `{"tradeId":"${id}"}`);
    phase.record(performance.now() - t, "close", closed, 200);
  }
}

async function runPhase(
  port: number,
  name: string,
  clients: readonly Client[],
  ms: number,
  peer?: Peer,
): Promise<Phase> {
  const phase = new Phase(name, clients.length);
  peer?.reset();
  const start = performance.now();
  await Promise.all(clients.map((c) => roundTrips(port, c, phase, start + ms)));
  phase.elapsedMs = performance.now() - start;
  if (peer !== undefined) phase.apiCommands = sum(await peer.counts());
  return phase;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summary(phase: Phase) {
  const sorted = Float64Array.from(phase.samples).sort();
  const round = (ms: number) => Math.round(ms * 100) / 100;
  return {
    orders: sorted.length,
    ordersPerSec: Math.round((sorted.length * 1000) / phase.elapsedMs),
    p50Ms: round(percentile(sorted, 50)),
    p90Ms: round(percentile(sorted, 90)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? NaN),
    errors: phase.errors,
    apiCommandsPerOrder: phase.apiCommands === undefined ? undefined : round(phase.apiCommands / sorted.length),
  };
}

/** The local Upstash REST peer in its own process, and its command counts. */
interface Peer {
  readonly url: string;
  readonly token: string;
  counts(): Promise<Record<string, number>>;
  reset(): void;
  close(): Promise<void>;
}

async function startPeer(redisUrl: string, delayMs: number): Promise<Peer> {
  const child: ChildProcess = fork(new URL("./upstash-peer.ts", import.meta.url), {
    env: { ...process.env, REDIS_URL: redisUrl, PEER_TOKEN: randomUUID(), PEER_DELAY_MS: String(delayMs) },
  });
  const next = async () => ((await once(child, "message")) as [PeerMessage])[0];
  const ready = await next();
  if (!("url" in ready)) throw new Error("the Upstash peer did not start");
  return {
    url: ready.url,
    token: ready.token,
    async counts() {
      child.send("counts");
      const reply = await next();
      if (!("counts" in reply)) throw new Error("unexpected reply from the Upstash peer");
      return reply.counts;
    },
    reset: () => void child.send("reset"),
    async close() {
      child.send("close");
      await once(child, "exit");
    },
  };
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/** Which process a connection belongs to, from its name (CLIENT SETNAME); the bench's own has none. */
function processOf(name: string): string {
  if (name.startsWith("api") || name === "upstash-bridge") return "api";
  if (name.startsWith("engine")) return "engine";
  if (name.startsWith("worker")) return "worker";
  return name === "" ? "bench" : name;
}

/**
 * Top-level commands naming a key under `prefix`, by process, while `during` runs (MONITOR; Lua's inner calls are
 * left out). Connections are told apart by address, named from CLIENT LIST taken before and after.
 */
async function countCommands(
  redis: Redis,
  prefix: string,
  during: () => Promise<void>,
): Promise<Record<string, number>> {
  const names = new Map<string, string>();
  const learnNames = async () => {
    const list = (await redis.client("LIST")) as string;
    for (const line of list.split("\n")) {
      const addr = /\baddr=(\S+)/.exec(line)?.[1];
      if (addr !== undefined) names.set(addr, /\bname=(\S*)/.exec(line)?.[1] ?? "");
    }
  };
  await learnNames();
  // A raw socket rather than ioredis' monitor(), whose connection fails with "Command queue state error" when
  // lines keep coming under load. Each line: +<time> [<db> <client address>|lua] "command" "arg" ...
  const seen = new Map<string, number>();
  const url = new URL(REDIS_URL);
  const socket = connect(Number(url.port || 6379), url.hostname);
  await once(socket, "connect");
  if (url.password !== "")
    socket.write(`AUTH ${decodeURIComponent(url.username || "default")} ${decodeURIComponent(url.password)}\r\n`);
  socket.write("MONITOR\r\n");
  let rest = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\r\n");
    rest = lines.pop() ?? "";
    for (const line of lines) {
      const source = /^\+\d+\.\d+ \[\d+ (\S+)\]/.exec(line)?.[1];
      if (source === undefined || source === "lua" || !line.includes(prefix)) continue;
      seen.set(source, (seen.get(source) ?? 0) + 1);
    }
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 100)); // MONITOR in effect
    await during();
    await new Promise((resolve) => setTimeout(resolve, 100)); // the last lines of the window
  } finally {
    socket.destroy();
  }
  await learnNames();
  const byProcess: Record<string, number> = {};
  for (const [source, n] of seen) {
    const who = processOf(names.get(source) ?? "?");
    byProcess[who] = (byProcess[who] ?? 0) + n;
  }
  return byProcess;
}

const perUnit = (counts: Record<string, number>, units: number) =>
  Object.fromEntries(Object.entries(counts).map(([who, n]) => [who, Math.round((n / units) * 100) / 100]));

/** The magic-link flow over HTTP, as a browser would walk it; returns the session token. */
async function signIn(port: number, agent: Agent, email: string): Promise<string> {
  const json = { "content-type": "application/json" };
  const asked = await send(port, agent, "POST", "/api/v1/auth", json, JSON.stringify({ email }));
  if (asked.status !== 200) throw new Error(`sign-in request for ${email}: ${asked.status} ${asked.body}`);
  const mailbox = await send(port, agent, "GET", "/api/v1/dev/mailbox", {});
  const mail = (JSON.parse(mailbox.body) as { emails: { to: string; link: string }[] }).emails.find(
    (m) => m.to === email,
  );
  if (mail === undefined) throw new Error(`no sign-in email for ${email} in the dev mailbox`);
  const link = new URL(mail.link);
  const verified = await send(port, agent, "GET", link.pathname + link.search, {});
  if (verified.status !== 200) throw new Error(`verify for ${email}: ${verified.status} ${verified.body}`);
  const token = /session=([^;]+)/.exec((verified.headers["set-cookie"] ?? []).join("\n"))?.[1];
  if (token === undefined) throw new Error(`no session cookie for ${email}`);
  return token;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const progress = (what: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}\n`);
  const prefix = `bench:api:${randomUUID()}:`;
  const keys = keyspace(prefix);
  const redis = new Redis(REDIS_URL);
  const processes: Child[] = [];
  const agents: Agent[] = [];
  let database: TestDatabase | undefined;
  let peer: Peer | undefined;
  let quoting: NodeJS.Timeout | undefined;
  let failed = false;
  try {
    const db = (database = await createTestDatabase());
    const port = await freePort();
    const profile = (name: string) =>
      CPU_PROF_DIR === undefined
        ? []
        : ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF_DIR}`, `--cpu-prof-name=${name}-${process.pid}.cpuprofile`];
    // Each with the entry and flags `npm start` uses (platform/components.ts).
    const start = (name: "engine" | "worker" | "api", env: Record<string, string>) => {
      const p = spawnComponent(
        name,
        { REDIS_URL, DATABASE_URL: db.url, KEY_PREFIX: prefix, ...env },
        { nodeFlags: profile(name) },
      );
      processes.push(p);
      return p;
    };
    const engine = start("engine", { SNAPSHOT_EVERY_MS: "10000", ENGINE_LEASE_TTL_MS: "5000" });
    await engine.waitFor("replay_done", 60_000);
    const worker = start("worker", {});
    if (VIA === "upstash") peer = await startPeer(REDIS_URL, UPSTASH_DELAY_MS);
    const poll = Object.fromEntries(
      ["UPSTASH_POLL_MIN_MS", "UPSTASH_POLL_MAX_MS"].flatMap((name) => {
        const value = process.env[name];
        return value === undefined ? [] : [[name, value]];
      }),
    );
    const api = start("api", {
      PORT: String(port),
      HOST,
      APP_URL: `http://${HOST}:${port}`,
      JWT_SECRET,
      TRADE_RATE_LIMIT_PER_SEC: "1000000",
      SIGN_IN_LIMIT_PER_IP: "1000000",
      SIGN_IN_EMAILS_PER_DAY: "1000000",
      ENGINE_TIMEOUT_MS: "5000",
      // Empty is unset: the dev mailbox, no redirect after verify, whatever the shell exports.
      RESEND_API_KEY: "",
      UPSTASH_REDIS_REST_URL: peer?.url ?? "",
      UPSTASH_REDIS_REST_TOKEN: peer?.token ?? "",
      ...poll,
      APP_REDIRECT_URL: "",
      CORS_ORIGINS: "",
    });
    await Promise.all([worker.waitFor("migrations_done", 60_000), api.waitFor("listening", 60_000)]);
    progress(`engine, worker and API up (API on ${HOST}:${port}); signing in ${CLIENTS} users`);

    const postQuote = async () => {
      const update: PriceUpdate = {
        type: "price_update",
        market: MARKET,
        bid: BID,
        ask: ASK,
        exchangeTimeUs: String(Date.now() * 1000),
        source: "sim",
      };
      await redis.xadd(keys.input, "*", ...encodeFields(update));
    };
    await postQuote();
    for (let i = 0; (await redis.hget(keys.quotesKey, "ETH")) === null; i++) {
      if (i === 500) throw new Error("the ETH quote never reached the read model");
      await new Promise((r) => setTimeout(r, 10));
    }
    quoting = setInterval(() => {
      postQuote().catch((err: unknown) => progress(`quote failed: ${String(err)}`));
    }, QUOTE_EVERY_MS);

    const setupAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(setupAgent);
    const clients: Client[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const email = `bench-${i}-${randomUUID().slice(0, 8)}@example.com`;
      const token = await signIn(port, setupAgent, email);
      // One connection per client, kept alive: what a busy client does, and no connect cost in the latencies.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(agent);
      clients.push({ agent, email, headers: { "content-type": "application/json", authorization: `Bearer ${token}` } });
    }

    progress(`warm-up: ${CLIENTS} clients for ${WARMUP_MS / 1000} s`);
    const warmup = await runPhase(port, "warm-up", clients, WARMUP_MS, peer);
    progress(`1 client for ${AT_1_MS / 1000} s`);
    const at1 = await runPhase(port, "1 client", clients.slice(0, 1), AT_1_MS, peer);
    progress(`${CLIENTS} clients for ${AT_N_MS / 1000} s`);
    const atN = await runPhase(port, `${CLIENTS} clients`, clients, AT_N_MS, peer);

    progress("counting Redis commands (MONITOR): per order, idle, per price tick");
    const ordersCounted = async (n: number) => {
      let orders = 0;
      const byProcess = await countCommands(redis, prefix, async () => {
        orders = (await runPhase(port, "counted", clients.slice(0, n), COUNT_WINDOW_MS)).samples.length;
      });
      return perUnit(byProcess, orders);
    };
    const perOrderAt1 = await ordersCounted(1);
    const perOrderAtN = await ordersCounted(CLIENTS);
    clearInterval(quoting);
    await postQuote();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const idle = perUnit(
      await countCommands(redis, prefix, () => new Promise((resolve) => setTimeout(resolve, COUNT_WINDOW_MS))),
      COUNT_WINDOW_MS / 1000,
    );
    const ticks = (TICKS_PER_SEC * COUNT_WINDOW_MS) / 1000;
    const duringTicks = await countCommands(redis, prefix, async () => {
      for (let i = 0; i < ticks; i++) {
        await postQuote();
        await new Promise((resolve) => setTimeout(resolve, 1000 / TICKS_PER_SEC));
      }
    });
    // Less what the system spends idle over the same time: what each tick costs on its own.
    const perTick = perUnit(
      Object.fromEntries(
        Object.entries(duringTicks).map(([who, n]) => [
          who,
          Math.max(0, n - ((idle[who] ?? 0) * ticks) / TICKS_PER_SEC),
        ]),
      ),
      ticks,
    );
    progress("checking that no trade is left open");

    let openLeft = 0;
    for (const c of clients) {
      const open = await send(port, setupAgent, "GET", "/api/v1/trade/open", c.headers);
      if (open.status !== 200) throw new Error(`GET /trade/open for ${c.email}: ${open.status} ${open.body}`);
      openLeft += (JSON.parse(open.body) as { trades: unknown[] }).trades.length;
    }

    // ---- report --------------------------------------------------------------------------------------------
    const phases = [warmup, at1, atN];
    const header = ["phase", "clients", "orders", "orders/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"];
    const rows = [VIA === "upstash" ? [...header, "API cmds/order"] : header];
    for (const p of phases) {
      const s = summary(p);
      const ms = [s.p50Ms, s.p90Ms, s.p99Ms, s.maxMs].map((x) => x.toFixed(2));
      const row = [p.name, String(p.clients), String(s.orders), String(s.ordersPerSec), ...ms, String(s.errors)];
      rows.push(VIA === "upstash" ? [...row, String(s.apiCommandsPerOrder)] : row);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const via =
      VIA === "upstash"
        ? `API on Upstash REST through the local peer, +${UPSTASH_DELAY_MS} ms per request`
        : "API on Redis over TCP";
    console.log(
      `API benchmark: create + close round trips over HTTP (node ${process.version}, real engine, worker and API processes; ${via})`,
    );
    for (const r of rows)
      console.log(
        `  ${r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")}`,
      );
    for (const p of phases) for (const [what, n] of p.failures) console.log(`  ${p.name}: ${n} × ${what}`);
    console.log(`  open trades left after the run: ${openLeft}`);
    const total = (counts: Record<string, number>) => Math.round(sum(counts) * 100) / 100;
    const show = (counts: Record<string, number>) =>
      `${total(counts)} (${Object.entries(counts)
        .sort()
        .map(([who, n]) => `${who} ${n}`)
        .join(", ")})`;
    console.log(`  Redis commands (top-level, this run's keys, MONITOR):`);
    console.log(`    per order at 1 client          ${show(perOrderAt1)}`);
    console.log(
      `    per order at ${CLIENTS} clients${" ".repeat(Math.max(0, 9 - String(CLIENTS).length))}  ${show(perOrderAtN)}`,
    );
    console.log(`    per second, idle               ${show(idle)}`);
    console.log(`    per price tick (${TICKS_PER_SEC}/s, idle deducted) ${show(perTick)}`);
    const s1 = summary(at1);
    const sN = summary(atN);
    const errors = phases.reduce((n, p) => n + p.errors, 0);
    console.log(
      JSON.stringify({
        p50MsAt1: s1.p50Ms,
        p99MsAt1: s1.p99Ms,
        ordersPerSecAt1: s1.ordersPerSec,
        ordersPerSecAt50: sN.ordersPerSec,
        p50MsAt50: sN.p50Ms,
        p99MsAt50: sN.p99Ms,
        errors,
        openTradesLeft: openLeft,
        clients: CLIENTS,
        p90MsAt1: s1.p90Ms,
        maxMsAt1: s1.maxMs,
        ordersAt1: s1.orders,
        p90MsAt50: sN.p90Ms,
        maxMsAt50: sN.maxMs,
        ordersAt50: sN.orders,
        redis: VIA,
        upstashDelayMs: VIA === "upstash" ? UPSTASH_DELAY_MS : undefined,
        apiCommandsPerOrderAt1: s1.apiCommandsPerOrder,
        apiCommandsPerOrderAt50: sN.apiCommandsPerOrder,
        commandsPerOrderAt1: total(perOrderAt1),
        commandsPerOrderAt50: total(perOrderAtN),
        idleCommandsPerSec: total(idle),
        commandsPerTick: total(perTick),
      }),
    );
    failed = errors > 0 || openLeft > 0;
  } catch (err) {
    for (const p of processes) process.stderr.write(`--- last lines of ${p.name}:\n${p.raw.slice(-12).join("\n")}\n`);
    throw err;
  } finally {
    if (quoting !== undefined) clearInterval(quoting);
    for (const agent of agents) agent.destroy();
    // API first, so nothing new reaches the log; SIGTERM lets each stop cleanly (and write a CPU profile).
    for (const p of [...processes].reverse()) {
      const killer = setTimeout(() => void p.stop("SIGKILL"), 15_000);
      await p.stop("SIGTERM");
      clearTimeout(killer);
    }
    await peer?.close();
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await database?.drop();
  }
  if (failed) throw new Error("some requests were not answered 2xx, or trades were left open (see above)");
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
