/**
 * Crash tests with the real processes: the engine and worker bundles (`dist/engine.mjs`, `dist/worker.mjs`, run by
 * spawnComponent) as child processes on real Redis and Postgres.
 *
 * 1. The worker is killed with SIGKILL mid-stream, several times, each time while it holds entries it has not
 *    acknowledged; a successor with another consumer name must claim them. At the end nothing is lost or
 *    doubled: one closed_orders row per closed trade and one spot_orders row per filled spot order, every answer
 *    delivered, nothing pending, read models equal to the engine's last word, every user's events stored once in
 *    seq order under the mark and fanned out, each minute's candle (and the last one fanned out for it) equal to
 *    its quotes in log order.
 * 2. A Redis with AOF (`appendfsync always`) is killed with SIGKILL while instructions are being XADDed; after a
 *    restart every acknowledged entry is still there, and the engine answers every instruction in the log.
 *
 * Random choices come from a seed, printed in failure messages; set CRASH_SEED to repeat a run.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isPrivateOutput,
  type EngineInput,
  type EngineOutput,
  type Instruction,
  type OutputOf,
  type PrivateOutput,
} from "../contract/messages.ts";
import { toUnits, USD_DECIMALS } from "../contract/money.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { decodeOutputFields, encodeFields } from "../contract/stream-fields.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import { freePort, spawnComponent, startRedisServer, until, type Child } from "../platform/testing/processes.ts";
import { seededRandom } from "../platform/testing/seeded-random.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { readEventsAfter } from "./events.ts";

const REDIS_URL = TEST_REDIS_URL;
const SEED =
  process.env.CRASH_SEED !== undefined ? Number(process.env.CRASH_SEED) : Math.floor(Math.random() * 2 ** 32);

const children: Child[] = [];
const databases: TestDatabase[] = [];
const prefixes: string[] = [];
const tmpDirs: string[] = [];
let redis: Redis;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await Promise.all(children.map((c) => c.stop("SIGKILL")));
  for (const prefix of prefixes) {
    await deleteKeysWithPrefix(redis, prefix);
  }
  redis.disconnect();
  for (const db of databases) await db.drop();
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

function track(child: Child): Child {
  children.push(child);
  return child;
}

async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  databases.push(db);
  return db;
}

function freshPrefix(): string {
  const prefix = `test:${randomUUID()}:`;
  prefixes.push(prefix);
  return prefix;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seedNote = `(CRASH_SEED=${SEED})`;

// ---- a seeded stream of instructions and prices ------------------------------------------------------------

/**
 * Accounts for every user and a quote per market, then endless rounds of open_trades with stop-losses and
 * take-profits close to the price, a few manual closes and spot orders, and price moves (a mean-reverting random
 * walk of up to ±1.2% a tick) that fire many of them. Levels are computed from the quote the engine will hold at
 * that point, so almost every order is accepted.
 */
function* streamRounds(rand: () => number, userCount: number): Generator<EngineInput[], never> {
  const users = Array.from({ length: userCount }, (_, i) => `u${String(i).padStart(2, "0")}`);
  const markets = [
    { market: "ETH_USDC_PERP", asset: "ETH", base: 200_000 },
    { market: "SOL_USDC_PERP", asset: "SOL", base: 15_000 },
  ]; // prices in ticks of 0.01
  const mids = markets.map((m) => m.base);
  const quotes = markets.map(() => ({ bid: 0, ask: 0 }));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const fmt = (ticks: number) => (ticks / 100).toFixed(2);
  let request = 0;
  let opens = 0;
  const instruct = (userId: string, instruction: Instruction): EngineInput => ({
    type: "user_instruction",
    userId,
    requestId: `r${++request}`,
    instruction,
  });
  const tick = (m: number): EngineInput => {
    const { base, market } = markets[m]!;
    mids[m] = Math.max(1000, Math.round(mids[m]! * (1 + (rand() - 0.5) * 0.024) + (base - mids[m]!) * 0.1));
    const half = 1 + Math.floor(rand() * 3);
    quotes[m] = { bid: mids[m] - half, ask: mids[m] + half };
    return {
      type: "price_update",
      market,
      bid: fmt(quotes[m].bid),
      ask: fmt(quotes[m].ask),
      exchangeTimeUs: `${Date.now()}000`,
      source: "sim",
    };
  };
  const open = (): EngineInput => {
    const m = Math.floor(rand() * markets.length);
    const long = rand() < 0.5;
    const { bid, ask } = quotes[m]!;
    const order: Instruction = {
      kind: "open_trade",
      asset: markets[m]!.asset,
      side: long ? "long" : "short",
      margin: String(5 + Math.floor(rand() * 46)),
      leverage: 2 + Math.floor(rand() * 19),
    };
    // Within 0.3–3% of the price: inside the liquidation level even at 20× (about 4.5% away).
    const away = () => 0.003 + rand() * 0.027;
    if (rand() < 0.9) order.stopLoss = fmt(long ? Math.floor(bid * (1 - away())) : Math.ceil(ask * (1 + away())));
    if (rand() < 0.9) order.takeProfit = fmt(long ? Math.ceil(bid * (1 + away())) : Math.floor(ask * (1 - away())));
    opens++;
    return instruct(pick(users), order);
  };
  yield [...users.map((u) => instruct(u, { kind: "create_account" })), ...markets.map((_, m) => tick(m))];
  for (;;) {
    const round: EngineInput[] = [];
    for (let i = 0; i < 8; i++) {
      const x = rand();
      if (x < 0.55) round.push(open());
      else if (x < 0.8) round.push(tick(Math.floor(rand() * markets.length)));
      else if (x < 0.92)
        round.push(
          instruct(pick(users), { kind: "close_trade", tradeId: `T0-${1 + Math.floor(rand() * Math.max(1, opens))}` }),
        );
      else
        round.push(
          instruct(pick(users), {
            kind: "spot_order",
            asset: "SOL",
            side: rand() < 0.6 ? "buy" : "sell",
            quantity: "0.5",
          }),
        );
    }
    yield round;
  }
}

function decodeAll(entries: [string, string[]][]): EngineOutput[] {
  return entries.map(([id, fields]) => {
    const decoded = decodeOutputFields(fields);
    if (!decoded.ok) throw new Error(`output ${id}: ${decoded.reason}`);
    return decoded.message;
  });
}

async function pendingOf(keys: Keyspace, consumer?: string): Promise<number> {
  const [count, , , consumers] = (await redis.xpending(keys.output, keys.workerGroup)) as [
    number,
    unknown,
    unknown,
    [string, string][] | null,
  ];
  if (consumer === undefined) return count;
  return Number((consumers ?? []).find(([name]) => name === consumer)?.[1] ?? 0);
}

/**
 * SIGKILLs the worker at a moment it holds unacknowledged entries: freezes it (SIGSTOP), and if what it has
 * pending stays put for a moment (no XACK still on its way), kills it; otherwise lets it run on and tries again.
 * Returns how many entries it left pending.
 */
async function killMidBatch(worker: Child, keys: Keyspace, consumer: string, rand: () => number): Promise<number> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    worker.proc.kill("SIGSTOP");
    const before = await pendingOf(keys, consumer);
    await sleep(20);
    const after = await pendingOf(keys, consumer);
    if ((before > 0 && before === after) || Date.now() > deadline) {
      worker.proc.kill("SIGKILL");
      await worker.exited;
      await sleep(20);
      return pendingOf(keys, consumer);
    }
    worker.proc.kill("SIGCONT");
    await sleep(rand() * 30);
  }
}

describe("crash tests with the real engine and worker processes", () => {
  it(
    "kill -9 of the worker mid-stream: no closed order lost or doubled, every answer delivered, read models current",
    { timeout: 210_000 },
    async () => {
      const rand = seededRandom(SEED + 1);
      const pg = await freshDatabase();
      const prefix = freshPrefix();
      const keys = keyspace(prefix);
      const env = {
        REDIS_URL,
        DATABASE_URL: pg.url,
        KEY_PREFIX: prefix,
        SNAPSHOT_EVERY_MS: "500",
        WORKER_CLAIM_IDLE_MS: "1000",
      };

      const engine = track(spawnComponent("engine", env));
      await engine.waitFor("replay_done", 30_000);
      const workers: { name: string; child: Child }[] = [];
      const startWorker = () => {
        const name = `crash-w${workers.length}`;
        const child = track(spawnComponent("worker", { ...env, WORKER_NAME: name }, { name }));
        workers.push({ name, child });
        return { name, child };
      };
      let current = startWorker();
      await current.child.waitFor("start", 30_000);

      const sent: EngineInput[] = [];
      let lastInputId = "";
      const killDelays = [1000 + rand() * 1000, 1500 + rand() * 1500, 1500 + rand() * 1500];

      // The stream: one pipelined round every 60 ms, 120 rounds at least, and on until the last kill is done, so
      // every kill comes while it flows.
      let killsDone = false;
      const streamer = (async () => {
        let rounds = 0;
        for (const round of streamRounds(seededRandom(SEED), 20)) {
          const pipe = redis.pipeline();
          for (const message of round) pipe.xadd(keys.input, "*", ...encodeFields(message));
          const results = (await pipe.exec()) ?? [];
          for (const [err, id] of results) {
            if (err !== null) throw err;
            lastInputId = id as string;
          }
          sent.push(...round);
          if (++rounds > 120 && killsDone) break;
          await sleep(60);
        }
      })();

      // Meanwhile: kill the worker at seeded moments, each time starting a successor under a new name.
      const leftPending: number[] = [];
      for (const delay of killDelays) {
        await sleep(delay);
        leftPending.push(await killMidBatch(current.child, keys, current.name, rand));
        current = startWorker();
      }
      killsDone = true;
      await streamer;

      // Everything sent is applied and published, then every output consumed and acknowledged.
      await until(
        async () => ((await redis.get(keys.enginePublished)) === lastInputId ? true : undefined),
        30_000,
        `engine published through ${lastInputId}`,
      );
      const lastOutputId = await until(
        async () => (await redis.xrevrange(keys.output, "+", "-", "COUNT", 1))[0]?.[0],
        5_000,
        "outputs",
      );
      await until(
        async () => {
          const groups = (await redis.xinfo("GROUPS", keys.output)) as unknown[][];
          const group = groups.find((g) => g[g.indexOf("name") + 1] === keys.workerGroup);
          const delivered = group?.[group.indexOf("last-delivered-id") + 1];
          return delivered === lastOutputId && (await pendingOf(keys)) === 0 ? true : undefined;
        },
        30_000,
        "the worker group to consume and acknowledge every output",
      );

      const outputs = decodeAll(await redis.xrange(keys.output, "-", "+"));
      const responses = outputs.filter((o): o is OutputOf<"order_response"> => o.type === "order_response");
      const closed = outputs.filter((o): o is OutputOf<"closed_order"> => o.type === "closed_order");

      // Answers expire after 60 s: check them first. Every order_response reached its per-request key.
      const pipe = redis.pipeline();
      for (const r of responses) pipe.llen(keys.responseKey(r.userId, r.inputId));
      const lengths = ((await pipe.exec()) ?? []).map(([err, n]) => {
        if (err !== null) throw err;
        return n as number;
      });
      const undelivered = responses.filter((_, i) => lengths[i]! < 1).map((r) => `${r.userId}/${r.requestId}`);
      expect(undelivered, `answers never delivered ${seedNote}`).toEqual([]);
      expect(await pendingOf(keys)).toBe(0);

      // The premise: the engine answered each instruction once (it never restarted), trades closed in numbers,
      // and every kill hit a worker that held unacknowledged entries.
      const instructions = sent.filter((m) => m.type === "user_instruction");
      expect(responses.map((r) => r.requestId).sort()).toEqual(instructions.map((m) => m.requestId).sort());
      expect(closed.length, seedNote).toBeGreaterThanOrEqual(100);
      expect(new Set(closed.map((c) => c.trade.closeReason)).size, seedNote).toBeGreaterThanOrEqual(2);
      expect(
        leftPending.every((n) => n > 0),
        `pending left by each killed worker: ${leftPending.join(", ")} ${seedNote}`,
      ).toBe(true);
      // What the dead left pending was claimed by their successors (a claimed batch may be claimed again after a kill).
      const claimed = workers
        .flatMap((w) => w.child.lines)
        .filter((l) => l.event === "claimed_pending")
        .reduce((n, l) => n + Number(l.entries), 0);
      expect(claimed, seedNote).toBeGreaterThanOrEqual(leftPending.reduce((a, b) => a + b, 0));
      for (const w of workers.slice(0, -1)) expect(w.child.alive()).toBe(false);
      expect(current.child.alive()).toBe(true);

      // What a worker handled before it had connected and migrated is owed, and written by a worker's catch-up (one
      // killed under the catch-up's lease holds it for up to 60 s): waited for here, after the answers, which expire.
      await until(
        async () => ((await redis.zcard(keys.postgresBacklog)) === 0 ? true : undefined),
        90_000,
        "the Postgres backlog written",
      );
      // Closed orders: exactly one row per closed trade, written from that trade's closed_order output.
      const rows = (
        await pg.db.query<{ id: string; output_id: string; user_id: string; pnl: string; close_reason: string }>(
          "SELECT id, output_id, user_id, pnl::text, close_reason FROM closed_orders ORDER BY id",
        )
      ).rows;
      const closedTradeIds = new Set(closed.map((c) => c.trade.id));
      expect(closedTradeIds.size, "the engine closed no trade twice").toBe(closed.length);
      expect(rows.length, `closed_orders rows vs closed trades ${seedNote}`).toBe(closedTradeIds.size);
      expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
      expect(new Set(rows.map((r) => r.output_id)).size).toBe(rows.length);
      const byTrade = new Map(closed.map((c) => [c.trade.id, c]));
      const mismatched = rows.filter((r) => {
        const c = byTrade.get(r.id);
        return (
          c === undefined ||
          c.id !== r.output_id ||
          c.userId !== r.user_id ||
          c.trade.closeReason !== r.close_reason ||
          Number(c.trade.pnl) !== Number(r.pnl)
        );
      });
      expect(mismatched, seedNote).toEqual([]);

      // Spot orders: exactly one row per filled spot order, written from its answer.
      const filled = responses.flatMap((r) =>
        r.answer.ok && r.answer.result.kind === "spot_order"
          ? [[r.answer.result.order.id, r.id, r.userId, toUnits(r.answer.result.order.total, USD_DECIMALS)]]
          : [],
      );
      const spotRows = (
        await pg.db.query<{ id: string; output_id: string; user_id: string; total: string }>(
          "SELECT id, output_id, user_id, total::text FROM spot_orders",
        )
      ).rows.map((r) => [r.id, r.output_id, r.user_id, toUnits(r.total, USD_DECIMALS)]);
      expect(filled.length, seedNote).toBeGreaterThan(0);
      expect(spotRows.sort(), seedNote).toEqual(filled.sort());

      // Read models: balances equal each user's last balances_changed; open trades those opened and not closed.
      const lastBalances = new Map<string, Record<string, string>>();
      const openTrades = new Map<string, Map<string, unknown>>();
      for (const o of outputs) {
        if (o.type === "balances_changed") lastBalances.set(o.userId, o.balances);
        else if (o.type === "trade_opened")
          openTrades.set(o.userId, (openTrades.get(o.userId) ?? new Map<string, unknown>()).set(o.trade.id, o.trade));
        else if (o.type === "closed_order") openTrades.get(o.userId)?.delete(o.trade.id);
      }
      expect(lastBalances.size).toBe(20);
      for (const [userId, balances] of lastBalances) {
        expect(await redis.hgetall(keys.balancesKey(userId)), `balances of ${userId} ${seedNote}`).toEqual(balances);
      }
      for (const [userId, trades] of openTrades) {
        const model = Object.fromEntries(
          Object.entries(await redis.hgetall(keys.openTradesKey(userId))).map(([id, json]) => [
            id,
            JSON.parse(json) as unknown,
          ]),
        );
        expect(model, `open trades of ${userId} ${seedNote}`).toEqual(Object.fromEntries(trades));
      }

      // Events: each user's store holds every private output once, in seq order 1, 2, …, all under the mark, and
      // the fan-out carried each at least once (a batch run again after a kill sends its events again).
      const privateByUser = new Map<string, PrivateOutput[]>();
      for (const o of outputs)
        if (isPrivateOutput(o)) privateByUser.set(o.userId, [...(privateByUser.get(o.userId) ?? []), o]);
      const fannedOut = new Map<string, Set<number>>();
      for (const [, fields] of await redis.xrange(keys.streamFanout, "-", "+")) {
        if (fields[1] !== "event") continue;
        const [user, seq] = [fields[3]!, Number(fields[5])];
        fannedOut.set(user, (fannedOut.get(user) ?? new Set<number>()).add(seq));
      }
      expect(privateByUser.size).toBe(20);
      for (const [userId, events] of privateByUser) {
        expect(
          events.map((e) => e.seq),
          `the engine numbers ${userId}'s events 1, 2, …`,
        ).toEqual(events.map((_, i) => i + 1));
        // Stored with `more` when its engine step has another event for the user after it.
        const continued = events.filter((e, i) => events[i + 1]?.inputId === e.inputId).map((e) => e.seq);
        const stored = await readEventsAfter(redis, keys, userId, 0, 100_000);
        expect(stored, `events of ${userId} ${seedNote}`).toEqual({
          ok: true,
          events,
          continued,
          mark: events.length,
          aheadSeq: 0,
        });
        expect(await redis.zcard(keys.eventsAheadKey(userId))).toBe(0);
        expect(
          [...(fannedOut.get(userId) ?? [])].sort((a, b) => a - b),
          `fan-out of ${userId} ${seedNote}`,
        ).toEqual(events.map((e) => e.seq));
      }

      // Candles: each minute's row is what the quotes give in log order, though batches were applied twice and
      // late; and the last candle fanned out for each minute is that row (a batch retried after a kill sends again).
      const expected = new Map<string, { open: number; high: number; low: number; close: number }>();
      for (const o of outputs) {
        if (o.type !== "quote_updated") continue;
        const key = `${o.asset} ${new Date(Math.floor(Date.parse(o.updatedAt) / 60_000) * 60_000).toISOString()}`;
        const bid = Number(o.bid);
        const c = expected.get(key);
        expected.set(
          key,
          c === undefined
            ? { open: bid, high: bid, low: bid, close: bid }
            : { ...c, high: Math.max(c.high, bid), low: Math.min(c.low, bid), close: bid },
        );
      }
      const candleRows = (
        await pg.db.query<{ asset: string; open_time: Date; open: string; high: string; low: string; close: string }>(
          "SELECT asset, open_time, open::text, high::text, low::text, close::text FROM candles_1m",
        )
      ).rows;
      const stored = new Map(
        candleRows.map((r) => [
          `${r.asset} ${r.open_time.toISOString()}`,
          { open: Number(r.open), high: Number(r.high), low: Number(r.low), close: Number(r.close) },
        ]),
      );
      expect(expected.size, seedNote).toBeGreaterThan(0);
      expect(stored, `candles ${seedNote}`).toEqual(expected);
      const lastFanned = new Map<string, unknown>();
      for (const [, fields] of await redis.xrange(keys.streamFanout, "-", "+")) {
        if (fields[1] !== "candle") continue;
        const c = JSON.parse(fields[3]!) as {
          asset: string;
          openTime: string;
          open: string;
          high: string;
          low: string;
          close: string;
        };
        const prices = { open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close) };
        lastFanned.set(`${c.asset} ${c.openTime}`, prices);
      }
      expect(lastFanned, `candles fanned out ${seedNote}`).toEqual(expected);
    },
  );

  it(
    "a Redis with AOF (appendfsync always) killed mid-write keeps every acknowledged instruction; the engine answers all",
    { timeout: 120_000 },
    async () => {
      const rand = seededRandom(SEED ^ 0x5eed);
      const dir = await mkdtemp(join(tmpdir(), "crash-aof-"));
      tmpDirs.push(dir);
      const port = await freePort();
      const aof = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""];
      const first = track(await startRedisServer(port, dir, aof));
      const prefix = freshPrefix();
      const keys = keyspace(prefix);
      const rounds = streamRounds(rand, 10);
      const messages = Array.from({ length: 80 }, () => rounds.next().value).flat();

      // Four writers XADD concurrently; an entry is acknowledged once its XADD returned an id. No retries, no
      // offline queue: a command caught by the crash fails instead of being replayed onto the restarted server.
      const client = new Redis({
        port,
        host: "127.0.0.1",
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        autoResendUnfulfilledCommands: false,
        retryStrategy: () => null,
      });
      client.on("error", () => undefined);
      await client.connect();
      const acked: { id: string; fields: string[] }[] = [];
      const failed: string[][] = [];
      let next = 0;
      const killAfter = 150 + Math.floor(rand() * 200);
      const writer = async () => {
        while (next < messages.length) {
          const fields = encodeFields(messages[next++]!);
          try {
            acked.push({ id: (await client.xadd(keys.input, "*", ...fields))!, fields });
          } catch {
            failed.push(fields);
            return;
          }
        }
      };
      const writers = Promise.all([writer(), writer(), writer(), writer()]);
      await until(
        () => Promise.resolve(acked.length >= killAfter ? true : undefined),
        20_000,
        `${killAfter} acknowledged XADDs`,
        1,
      );
      first.proc.kill("SIGKILL");
      await first.exited;
      await writers;
      client.disconnect();
      expect(acked.length).toBeGreaterThanOrEqual(killAfter);
      expect(next, "the crash came before the end of the stream").toBeLessThan(messages.length);

      // Same port, same directory: it loads the AOF.
      track(await startRedisServer(port, dir, aof));
      const restarted = new Redis({ port, host: "127.0.0.1" });
      try {
        const entries = (await restarted.xrange(keys.input, "-", "+")) as [string, string[]][];
        const byId = new Map(entries);
        const lost = acked.filter((a) => JSON.stringify(byId.get(a.id)) !== JSON.stringify(a.fields));
        expect(
          lost.map((a) => a.id),
          `acknowledged entries lost or changed ${seedNote}`,
        ).toEqual([]);
        // Anything else in the stream can only be an XADD that was in flight when Redis died.
        const ackedIds = new Set(acked.map((a) => a.id));
        const inFlight = new Set(failed.map((f) => JSON.stringify(f)));
        const extra = entries.filter(([id]) => !ackedIds.has(id));
        expect(extra.filter(([, fields]) => !inFlight.has(JSON.stringify(fields)))).toEqual([]);

        // The log goes on after the restart (ids keep growing), then the engine runs against this Redis.
        const lastBefore = entries.at(-1)![0];
        for (const message of messages.slice(next)) {
          const id = (await restarted.xadd(keys.input, "*", ...encodeFields(message)))!;
          expect(compareIds(id, lastBefore)).toBeGreaterThan(0);
        }
        const log = (await restarted.xrange(keys.input, "-", "+")) as [string, string[]][];
        const asked = log.flatMap(([, fields]) => {
          const body = JSON.parse(fields[fields.indexOf("body") + 1]!) as EngineInput;
          return body.type === "user_instruction" ? [body.requestId] : [];
        });
        expect(asked.length).toBeGreaterThan(killAfter / 2);

        const pg = await freshDatabase();
        const engine = track(
          spawnComponent(
            "engine",
            {
              REDIS_URL: `redis://127.0.0.1:${port}`,
              DATABASE_URL: pg.url,
              KEY_PREFIX: prefix,
              SNAPSHOT_EVERY_MS: "500",
            },
            { name: "engine-aof" },
          ),
        );
        const durability = await engine.waitFor("redis_durability", 30_000);
        expect(durability).toMatchObject({ appendonly: true, appendfsync: "always" });
        expect(engine.lines.some((l) => l.event === "redis_aof_off")).toBe(false);
        const lastId = log.at(-1)![0];
        await until(
          async () => ((await restarted.get(keys.enginePublished)) === lastId ? true : undefined),
          30_000,
          `engine published through ${lastId}`,
        );
        const outputs = decodeAll(await restarted.xrange(keys.output, "-", "+"));
        const answered = outputs.flatMap((o) => (o.type === "order_response" ? [o.requestId] : []));
        expect(answered.sort(), seedNote).toEqual(asked.sort());
        await engine.stop("SIGTERM");
        expect(await engine.exited).toEqual({ code: 0, signal: null });
      } finally {
        restarted.disconnect();
      }
    },
  );
});

function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  return am !== bm ? (am > bm ? 1 : -1) : as === bs ? 0 : as > bs ? 1 : -1;
}
