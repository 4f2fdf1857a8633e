/**
 * Live stream benchmark: `npm run bench:stream` (needs Redis and Postgres, about 3 minutes). Prints a table, then one
 * JSON line. The real engine, worker, API and stream processes run on a fresh test database and a unique
 * KEY_PREFIX, all removed at the end. The clients (raw `ws` sockets speaking docs/stream.md) share the machine, spread
 * over BENCH_CLIENT_PROCS child processes (default one per core, clients.ts), each timestamping frames as they arrive:
 * a thousand sockets read by one event loop would count that loop's queue as stream latency, and more processes than
 * cores only take turns on them, each woken for fewer frames at a time.
 *
 * 1. BENCH_USERS users (default 1,000): accounts through the log (`create_account`), sessions signed with the run's
 *    JWT_SECRET as the API signs them, a ticket each through `POST /api/v1/stream/ticket`. Each user's socket
 *    subscribes to every market's quotes and to its own private channel.
 * 2. For BENCH_SECONDS (default 20): the bench XADDs price updates (TICKS_PER_SEC per market, a frame matched to
 *    its tick by market and `updatedAt`, the tick's entry time) and ORDERS_PER_SEC users open a trade through the API.
 *    - quote latency: the tick's XADD → its frame at a client, over every frame every client got (the four markets
 *      tick together), split at the engine's output XADD and the worker's fan-out XADD;
 *    - private latency: the API's 201 for an order → that trade's `trade_opened` event at its owner's socket (an
 *      event that beats the HTTP answer counts as 0);
 *    - the stream process's CPU (user + system, from /proc) over the phase, and its RSS growth from before any
 *      socket connected, both scaled to 1,000 connections; the client processes' CPU.
 * 3. Connections held: quote-only sockets (tickets written straight into Redis: the route is not what is measured
 *    here) added in steps of BENCH_STEP (default 1,000) up to BENCH_MAX_CONNECTIONS (default 12,000), one market
 *    ticking at 2/s, starting with the BENCH_USERS sockets of phase 2 alone; at each step the p99 of quote latency
 *    over 5 s, until a step's p99 passes 50 ms; then one step at BENCH_FLOOR_CONNECTIONS, to set beside the floor's
 *    figure there (`held` in the JSON). `maxConnectionsHeld` is the largest step with every socket open and
 *    p99 ≤ 50 ms. The bench raises its own file limit to the hard limit (`ulimit -Hn`).
 * 4. The floor (floor-server.ts), once the stream's sockets are closed: a bare `ws` server with nothing behind it
 *    bursts one frame to BENCH_USERS sockets of the same kind of client processes, then one frame per market to
 *    each (phase 2's tick, in one write per socket), then one frame to BENCH_FLOOR_CONNECTIONS (default 10,000),
 *    10 times each: what this machine allows any stream process.
 * BENCH_CPU_PROFILE=<component> (stream, worker, engine, api) writes that process's CPU profile to .data/profiles.
 */
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { Redis } from "ioredis";
import { ASSETS } from "../../contract/markets.ts";
import { keyspace } from "../../contract/names.ts";
import type { EngineInput } from "../../contract/messages.ts";
import { encodeFields } from "../../contract/stream-fields.ts";
import { Sessions } from "../../functions/auth/sessions.ts";
import { streamTicketHash } from "../../functions/auth/stream-tickets.ts";
import { createIoredisApiRedis } from "../../functions/redis/ioredis-api-redis.ts";
import { freePorts, spawnComponent, until, type Child } from "../../platform/testing/processes.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { deleteKeysWithPrefix } from "../../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";

const USERS = Number(process.env.BENCH_USERS ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const STEP = Number(process.env.BENCH_STEP ?? 1000);
const MAX_CONNECTIONS = Number(process.env.BENCH_MAX_CONNECTIONS ?? 12_000);
const CLIENT_PROCS = Number(process.env.BENCH_CLIENT_PROCS ?? availableParallelism());
/** The floor's larger count of sockets: the aim's 10,000. */
const FLOOR_CONNECTIONS = Number(process.env.BENCH_FLOOR_CONNECTIONS ?? 10_000);
/** A component to take a CPU profile of (node --cpu-prof, into .data/profiles when it stops). */
const PROFILE = process.env.BENCH_CPU_PROFILE;
const TICKS_PER_SEC = 5;
const ORDERS_PER_SEC = 20;
const MARKETS = ["ETH_USDC_PERP", "BTC_USDC_PERP", "SOL_USDC_PERP", "ADA_USDC_PERP"] as const;
const BASE: Record<(typeof MARKETS)[number], number> = {
  ETH_USDC_PERP: 4000,
  BTC_USDC_PERP: 97_000,
  SOL_USDC_PERP: 200,
  ADA_USDC_PERP: 0.9,
};
const JWT_SECRET = "bench-stream-secret-0123456789-0123456789";
const prefix = `bench:stream:${randomUUID()}:`;
const keys = keyspace(prefix);
const now = () => performance.timeOrigin + performance.now();

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const sortNum = (xs: number[]) => xs.sort((a, b) => a - b);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** CPU seconds (user + system) and RSS (MB) of a process, from /proc. */
function procStats(pid: number): { cpuSec: number; rssMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssPages = Number(fields[21]);
  return { cpuSec: ticks / 100, rssMB: (rssPages * 4096) / 2 ** 20 };
}

/**
 * Every tick's XADD time, by "<asset> <entry ms>": the engine stamps a quote's `updatedAt` with its input entry's time,
 * and one market's ticks are hundreds of ms apart, so a frame is matched to its tick whatever its price.
 */
const tickSentAt = new Map<string, number>();
const quoteKey = (asset: string, entryMs: number) => `${asset} ${entryMs}`;
let tickCounter = 0;

function priceUpdate(market: (typeof MARKETS)[number]): EngineInput & { type: "price_update" } {
  tickCounter++;
  const base = BASE[market];
  // A new bid each time: a step of the market's tick size (the engine ignores a price off it), cycling within ±1%.
  const decimals = ASSETS.find((a) => a.market === market)!.priceDecimals;
  const unit = 10 ** -decimals;
  const bid = (base + (tickCounter % Math.floor((base * 0.01) / unit)) * unit).toFixed(decimals);
  const ask = (Number(bid) + unit * 2).toFixed(decimals);
  return {
    type: "price_update",
    market,
    bid,
    ask,
    exchangeTimeUs: String(Date.now() * 1000),
    source: "sim",
  };
}

async function tick(redis: Redis, market: (typeof MARKETS)[number]): Promise<void> {
  const sentAt = now();
  const id = await redis.xadd(keys.input, "*", ...encodeFields(priceUpdate(market)));
  tickSentAt.set(quoteKey(market.split("_")[0]!, Number(id!.split("-")[0])), sentAt);
}

/** What the client processes received since the last reset: quote frames and trade_opened events, as they arrived. */
interface Arrivals {
  open: number;
  quotes: { key: string; at: number }[];
  trades: { id: string; at: number }[];
}

/** The client processes (clients.ts): sockets opened round-robin across them, arrivals gathered from all. */
class ClientPool {
  private readonly procs: ChildProcess[];
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  private nextId = 0;
  private nextProc = 0;

  constructor(count: number) {
    this.procs = Array.from({ length: count }, () => {
      const child = fork(new URL("./clients.ts", import.meta.url), [], {
        execArgv: ["--import", "tsx"],
        serialization: "advanced",
      });
      child.on("message", (reply: Record<string, unknown>) => {
        this.waiting.get(reply.id as number)?.(reply);
        this.waiting.delete(reply.id as number);
      });
      return child;
    });
  }

  private ask(child: ChildProcess, message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, resolve);
      child.send({ ...message, id }, (error) => error && reject(error));
    });
  }

  /** Opens sockets (each resolved once welcomed, and snapshotted when it subscribes to its private channel). */
  async connect(sockets: { url: string; subs: object[] }[]): Promise<void> {
    const shares = this.procs.map(() => [] as { url: string; subs: object[] }[]);
    for (const socket of sockets) shares[this.nextProc++ % this.procs.length]!.push(socket);
    const replies: Record<string, unknown>[] = await Promise.all(
      shares.map((share, i) =>
        share.length === 0 ? Promise.resolve({}) : this.ask(this.procs[i]!, { op: "connect", sockets: share }),
      ),
    );
    const failed = replies.find((r) => r.error !== undefined);
    if (failed) throw new Error(String(failed.error));
  }

  /** Arrivals since the last reset (`reset`: start a fresh record), and how many sockets are open. */
  async collect(reset: boolean): Promise<Arrivals> {
    const replies = await Promise.all(this.procs.map((child) => this.ask(child, { op: "collect", reset })));
    const out: Arrivals = { open: 0, quotes: [], trades: [] };
    for (const r of replies) {
      out.open += r.open as number;
      const [keys, quoteAt] = [r.quoteKeys as string[], r.quoteAt as Float64Array];
      for (let i = 0; i < keys.length; i++) out.quotes.push({ key: keys[i]!, at: quoteAt[i]! });
      const [ids, tradeAt] = [r.trades as string[], r.tradeAt as Float64Array];
      for (let i = 0; i < ids.length; i++) out.trades.push({ id: ids[i]!, at: tradeAt[i]! });
    }
    return out;
  }

  /** CPU seconds the client processes have used, together. */
  cpuSec(): number {
    return this.procs.reduce((sum, child) => sum + procStats(child.pid!).cpuSec, 0);
  }

  /** Ends every client process (their sockets with them); once is enough, twice is harmless. */
  close(): void {
    for (const child of this.procs) if (child.connected) child.disconnect();
  }
}

interface FloorStep {
  readonly sockets: number;
  /** Frames per socket per burst, in one write: 1, or one per market (a tick of all of them at once). */
  readonly frames: number;
}

/**
 * The floor (floor-server.ts): for each step (sockets in ascending order), 10 bursts at 2/s (after 3 not counted)
 * from a bare ws server to that many sockets of fresh client processes; p50 / p99 of burst start → frame at client
 * over every frame.
 */
async function measureFloor(steps: readonly FloorStep[]): Promise<(FloorStep & { p50: number; p99: number })[]> {
  const server = fork(new URL("./floor-server.ts", import.meta.url), [], { execArgv: ["--import", "tsx"] });
  const pool = new ClientPool(CLIENT_PROCS);
  const replies = new Map<number, (sentAt: number) => void>();
  const port = await new Promise<number>((resolve) => server.once("message", (m: { port: number }) => resolve(m.port)));
  server.on("message", (m: { id: number; sentAt: number }) => replies.get(m.id)?.(m.sentAt));
  const out: (FloorStep & { p50: number; p99: number })[] = [];
  let nextBurst = 0;
  try {
    let open = 0;
    for (const { sockets: count, frames } of steps) {
      for (; open < count; open += 200) {
        const n = Math.min(200, count - open);
        await pool.connect(Array.from({ length: n }, () => ({ url: `ws://127.0.0.1:${port}`, subs: [] })));
      }
      await pool.collect(true);
      const sent = new Map<string, number>();
      // Three bursts first, not counted: the first writes to fresh sockets and runs cold code at both ends.
      for (let i = 0; i < 13; i++) {
        const id = nextBurst++;
        const sentAt = await new Promise<number>((resolve) => {
          replies.set(id, resolve);
          server.send({ op: "burst", id, frames });
        });
        if (i >= 3)
          for (let k = 0; k < frames; k++)
            sent.set(quoteKey(frames === 1 ? "FLOOR" : `FLOOR${k}`, Math.floor(sentAt)), sentAt);
        await new Promise((r) => setTimeout(r, 500));
      }
      const { quotes } = await pool.collect(true);
      const latencies = sortNum(quotes.flatMap(({ key, at }) => (sent.has(key) ? [at - sent.get(key)!] : [])));
      const expected = 10 * count * frames;
      if (latencies.length !== expected) throw new Error(`floor: ${latencies.length} frames of ${expected}`);
      out.push({ sockets: count, frames, p50: percentile(latencies, 50), p99: percentile(latencies, 99) });
    }
  } finally {
    pool.close();
    server.disconnect();
  }
  return out;
}

async function main(): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL);
  const pg: TestDatabase = await createTestDatabase();
  const [port, streamPort] = (await freePorts(2)) as [number, number];
  const env = {
    REDIS_URL: TEST_REDIS_URL,
    DATABASE_URL: pg.url,
    KEY_PREFIX: prefix,
    PORT: String(port),
    HOST: "127.0.0.1",
    APP_URL: `http://127.0.0.1:${port}`,
    STREAM_PORT: String(streamPort),
    STREAM_URL: `ws://127.0.0.1:${streamPort}/api/v1/stream`,
    JWT_SECRET,
    TRADE_RATE_LIMIT_PER_SEC: "1000",
    STREAM_TICKET_LIMIT_PER_MIN: "1000",
    // The connections held are spread over the users (BENCH_USERS): fewer users than that would go past the cap.
    STREAM_MAX_CONNECTIONS_PER_USER: "10000",
    LOG_LEVEL: "warn",
  };
  const children: Child[] = [];
  const clients = new ClientPool(CLIENT_PROCS);
  const start = async (name: "api" | "engine" | "worker" | "stream", ready: string) => {
    const profile = PROFILE === name ? ["--cpu-prof", "--cpu-prof-dir=.data/profiles"] : [];
    const child = spawnComponent(name, { ...env, LOG_LEVEL: "info" }, { nodeFlags: profile });
    children.push(child);
    await child.waitFor(ready, 60_000);
    return child;
  };
  try {
    await start("api", "listening");
    await Promise.all([start("engine", "replay_done"), start("worker", "start")]);
    const stream = await start("stream", "listening");
    const streamPid = stream.proc.pid!;

    // Prices first: orders need a quote.
    for (const m of MARKETS) await tick(redis, m);

    // ---- 1. users, sessions, tickets, sockets ------------------------------------------------------------
    const users = Array.from({ length: USERS }, (_, i) => `bench${i}`);
    const pipe = redis.pipeline();
    for (const u of users) {
      const message: EngineInput = {
        type: "user_instruction",
        requestId: `create-${u}`,
        userId: u,
        instruction: { kind: "create_account" },
      };
      pipe.xadd(keys.input, "*", ...encodeFields(message));
    }
    await pipe.exec();
    const apiRedis = createIoredisApiRedis(TEST_REDIS_URL);
    const sessions = new Sessions(new TextEncoder().encode(JWT_SECRET), apiRedis, keys);
    const tokens = await Promise.all(
      users.map(async (u) => (await sessions.issue({ id: u, email: `${u}@bench.test` })).token),
    );
    await until(
      async () => ((await redis.exists(keys.balancesKey(users.at(-1)!))) === 1 ? true : undefined),
      60_000,
      "every account created",
    );

    const baseline = procStats(streamPid);
    /** trade id → the time its order's 201 arrived. */
    const answeredAt = new Map<string, number>();
    let measureStart = 0;
    const ticket = async (token: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/stream/ticket`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      if (res.status !== 201) throw new Error(`ticket: ${res.status} ${await res.text()}`);
      return (await res.json()) as { ticket: string; url: string };
    };
    const connectStart = now();
    for (let i = 0; i < USERS; i += 50) {
      const batch = await Promise.all(
        tokens.slice(i, i + 50).map(async (token) => {
          const t = await ticket(token);
          return { url: `${t.url}?ticket=${t.ticket}`, subs: [{ channel: "quotes" }, { channel: "private" }] };
        }),
      );
      await clients.connect(batch);
    }
    const connectMs = now() - connectStart;

    // ---- 2. quotes and orders flowing ----------------------------------------------------------------------
    // Fresh prices first: setting up took longer than a quote stays tradable, and the first order comes before the
    // first tick of the phase.
    for (const m of MARKETS) await tick(redis, m);
    const before = procStats(streamPid);
    const clientsBefore = clients.cpuSec();
    await clients.collect(true);
    measureStart = now();
    const tickTimer = setInterval(() => {
      for (const m of MARKETS) void tick(redis, m);
    }, 1000 / TICKS_PER_SEC);
    let orders = 0;
    let orderErrors = 0;
    let firstRefusal = "";
    const orderTimer = setInterval(() => {
      const token = tokens[orders % tokens.length]!;
      orders++;
      void fetch(`http://127.0.0.1:${port}/api/v1/trade/create`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ asset: "ETH", type: "long", margin: "10", leverage: 2 }),
      }).then(async (res) => {
        const at = now();
        if (res.status !== 201) {
          if (orderErrors++ === 0) firstRefusal = `${res.status} ${await res.text()}`;
          return;
        }
        answeredAt.set(((await res.json()) as { trade: { id: string } }).trade.id, at);
      });
    }, 1000 / ORDERS_PER_SEC);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    clearInterval(tickTimer);
    clearInterval(orderTimer);
    await new Promise((r) => setTimeout(r, 1000));
    const after = procStats(streamPid);
    const clientCpuPct = ((clients.cpuSec() - clientsBefore) / (SECONDS + 1)) * 100;
    const arrivals = await clients.collect(true);
    const openAt1k = arrivals.open;
    // Quote latency: the tick's XADD → its frame at a client, for ticks sent in the phase. Private latency: the
    // order's 201 → its trade_opened at its owner's socket (an event that beat the HTTP answer counts as 0).
    const quoteLatencies: number[] = [];
    for (const { key, at } of arrivals.quotes) {
      const sent = tickSentAt.get(key);
      if (sent !== undefined && sent >= measureStart) quoteLatencies.push(at - sent);
    }
    const privateLatencies: number[] = [];
    for (const { id, at } of arrivals.trades) {
      const answered = answeredAt.get(id);
      if (answered !== undefined) privateLatencies.push(Math.max(0, at - answered));
    }
    // Where a quote's time goes: its tick's XADD (the input id) → the engine's output XADD → the worker's fan-out
    // XADD (entry ids, Redis times in ms) → its frames at the clients.
    const toFanout: number[] = [];
    const toOutput: number[] = [];
    const outputAt = new Map<string, number>();
    for (const [id, fields] of await redis.xrange(keys.output, "-", "+")) {
      if (fields[1] !== "quote_updated") continue;
      const inputId = (JSON.parse(fields[3]!) as { inputId: string }).inputId;
      outputAt.set(inputId, Number(id.split("-")[0]));
    }
    /** Each tick's fan-out XADD (ms), by the same key as tickSentAt. */
    const fanoutAt = new Map<string, number>();
    for (const [id, fields] of await redis.xrange(keys.streamFanout, "-", "+")) {
      if (fields[1] !== "quote") continue;
      const { inputId, asset } = JSON.parse(fields[3]!) as { inputId: string; asset: string };
      const inputMs = Number(inputId.split("-")[0]);
      if (inputMs < measureStart) continue;
      fanoutAt.set(quoteKey(asset, inputMs), Number(id.split("-")[0]));
      toFanout.push(Number(id.split("-")[0]) - inputMs);
      const output = outputAt.get(inputId);
      if (output !== undefined) toOutput.push(output - inputMs);
    }
    sortNum(toFanout);
    sortNum(toOutput);
    const fromFanout: number[] = [];
    for (const { key, at } of arrivals.quotes) {
      const fanned = fanoutAt.get(key);
      if (fanned !== undefined) fromFanout.push(at - fanned);
    }
    sortNum(fromFanout);
    const cpuPct = ((after.cpuSec - before.cpuSec) / (SECONDS + 1)) * 100;
    const rssPer1k = ((after.rssMB - baseline.rssMB) * 1000) / USERS;
    sortNum(quoteLatencies);
    sortNum(privateLatencies);

    // ---- 3. connections held -------------------------------------------------------------------------------
    const held: { connections: number; open: number; p99: number; frames: number; rssMB: number }[] = [];
    let extra = 0;
    let maxHeld = 0;
    // The 1k phase's sockets stay open and subscribed; they count towards the connections held. Steps of STEP while
    // the p99 holds; past it, one step at the floor's larger count, for the stream's figure beside the floor's.
    for (let total = USERS; total <= MAX_CONNECTIONS;) {
      try {
        while (extra + USERS < total) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(200, total - USERS - extra) }, async (_, i) => {
              const t = randomBytes(32).toString("base64url");
              const hash = streamTicketHash(t);
              const user = users[(extra + i) % users.length]!;
              const value = { userId: user, sessionId: randomUUID(), sessionExpiresAtMs: Date.now() + 3_600_000 };
              await redis.set(keys.streamTicketKey(hash), JSON.stringify(value), "PX", 30_000);
              return { url: `${env.STREAM_URL}?ticket=${t}`, subs: [{ channel: "quotes", assets: ["ETH"] }] };
            }),
          );
          await clients.connect(batch);
          extra += batch.length;
        }
      } catch (err) {
        held.push({ connections: total, open: -1, p99: Number.NaN, frames: 0, rssMB: procStats(streamPid).rssMB });
        process.stdout.write(`connections: failed at ${total}: ${String(err)}\n`);
        break;
      }
      await clients.collect(true);
      const stepStart = now();
      const timer = setInterval(() => void tick(redis, "ETH_USDC_PERP"), 500);
      await new Promise((r) => setTimeout(r, 5000));
      clearInterval(timer);
      await new Promise((r) => setTimeout(r, 500));
      const step = await clients.collect(true);
      // Ticks sent during the step only, at every socket: a subscribe is answered with the latest quote, however old.
      const stepLatencies: number[] = [];
      for (const { key, at } of step.quotes) {
        const sent = tickSentAt.get(key);
        if (sent !== undefined && sent >= stepStart) stepLatencies.push(at - sent);
      }
      const open = step.open;
      const p99 = percentile(sortNum(stepLatencies), 99);
      held.push({ connections: total, open, p99, frames: stepLatencies.length, rssMB: procStats(streamPid).rssMB });
      if (open !== total) break;
      if (p99 <= 50) [maxHeld, total] = [total, total + STEP];
      else if (total < FLOOR_CONNECTIONS) total = FLOOR_CONNECTIONS;
      else break;
    }
    clients.close();

    // ---- 4. the floor: a bare ws server's burst to the same kind of clients, the system idle -----------------
    // At BENCH_USERS also as phase 2's ticks reach each client: one frame per market, in one write at best.
    const floor = await measureFloor([
      { sockets: USERS, frames: 1 },
      { sockets: USERS, frames: MARKETS.length },
      { sockets: FLOOR_CONNECTIONS, frames: 1 },
    ]);

    // ---- report ------------------------------------------------------------------------------------------
    const rows: [string, string][] = [
      [
        "clients connected (1 per user, quotes + private)",
        `${openAt1k} of ${USERS} (connect: ${round(connectMs / 1000)} s)`,
      ],
      [
        "quote latency p50 / p99 (tick XADD → frame at client)",
        `${round(percentile(quoteLatencies, 50), 2)} / ${round(percentile(quoteLatencies, 99), 2)} ms over ${quoteLatencies.length} frames`,
      ],
      [
        "private latency p50 / p99 (order's 201 → trade_opened at client)",
        `${round(percentile(privateLatencies, 50), 2)} / ${round(percentile(privateLatencies, 99), 2)} ms over ${privateLatencies.length} orders (${orderErrors} refused${orderErrors > 0 ? `, first: ${firstRefusal.slice(0, 120)}` : ""})`,
      ],
      [
        "…of which tick XADD → worker's fan-out XADD, p50 / p99 (ms resolution)",
        `${percentile(toFanout, 50)} / ${percentile(toFanout, 99)} ms over ${toFanout.length} quotes`,
      ],
      [
        "…of which tick XADD → engine's output XADD, p50 / p99 (ms resolution)",
        `${percentile(toOutput, 50)} / ${percentile(toOutput, 99)} ms over ${toOutput.length} quotes`,
      ],
      [
        "…of which the worker's fan-out XADD → frame at client, p50 / p99",
        `${round(percentile(fromFanout, 50))} / ${round(percentile(fromFanout, 99))} ms over ${fromFanout.length} frames`,
      ],
      ["stream process CPU per 1,000 connections", `${round((cpuPct * 1000) / USERS)} % of one core`],
      [`the ${CLIENT_PROCS} client processes' CPU, together`, `${round(clientCpuPct)} % of one core`],
      [
        "stream process RSS per 1,000 connections",
        `${round(rssPer1k)} MB (${round(baseline.rssMB)} MB before any connection, ${round(after.rssMB)} MB after)`,
      ],
      ...held.map((h): [string, string] => [
        `held ${h.connections} connections (1 market at 2 ticks/s)`,
        `${h.open} open, quote p99 ${round(h.p99, 2)} ms over ${h.frames} frames, RSS ${round(h.rssMB)} MB`,
      ]),
      ["largest number held with p99 ≤ 50 ms", `${maxHeld}`],
      ...floor.map((f): [string, string] => [
        `floor: a bare ws server's burst to ${f.sockets} sockets${f.frames > 1 ? `, ${f.frames} frames each` : ""}, p50 / p99`,
        `${round(f.p50, 2)} / ${round(f.p99, 2)} ms (burst start → frame at client)`,
      ]),
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    process.stdout.write(
      `\nbench:stream (${USERS} users, ${SECONDS} s, ${MARKETS.length} markets × ${TICKS_PER_SEC} ticks/s, ${ORDERS_PER_SEC} orders/s)\n`,
    );
    for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
    process.stdout.write(
      `${JSON.stringify({
        bench: "stream",
        users: USERS,
        quoteP50MsAt1k: round(percentile(quoteLatencies, 50), 2),
        quoteP99MsAt1k: round(percentile(quoteLatencies, 99), 2),
        quoteToFanoutP50Ms: percentile(toFanout, 50),
        quoteToFanoutP99Ms: percentile(toFanout, 99),
        quoteToOutputP50Ms: percentile(toOutput, 50),
        quoteToOutputP99Ms: percentile(toOutput, 99),
        fanoutToClientP50Ms: round(percentile(fromFanout, 50)),
        fanoutToClientP99Ms: round(percentile(fromFanout, 99)),
        privateP50MsAt1k: round(percentile(privateLatencies, 50), 2),
        privateP99MsAt1k: round(percentile(privateLatencies, 99), 2),
        streamCpuPctPer1k: round((cpuPct * 1000) / USERS),
        streamRssMBPer1k: round(rssPer1k),
        clientsCpuPct: round(clientCpuPct),
        maxConnectionsHeld: maxHeld,
        held: held.map((h) => ({ connections: h.connections, open: h.open, p99Ms: round(h.p99, 2) })),
        floor: floor.map((f) => ({
          sockets: f.sockets,
          frames: f.frames,
          p50Ms: round(f.p50, 2),
          p99Ms: round(f.p99, 2),
        })),
        quoteFrames: quoteLatencies.length,
        privateEvents: privateLatencies.length,
        ordersRefused: orderErrors,
      })}\n`,
    );
    await apiRedis.close();
    if (openAt1k !== USERS || privateLatencies.length === 0 || quoteLatencies.length === 0) process.exitCode = 1;
  } finally {
    clients.close();
    await Promise.all(children.map((c) => c.stop("SIGTERM")));
    await deleteKeysWithPrefix(redis, prefix);
    await redis.quit();
    await pg.drop();
  }
}

await main();
