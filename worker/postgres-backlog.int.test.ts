/**
 * The Postgres backlog's scripts on real Redis: what each leaves behind when Redis refuses part of it, and what the
 * backlog's count reads; and that a worker owes a batch before its answers go out.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineInput } from "../contract/messages.ts";
import { keyspace } from "../contract/names.ts";
import { outputEntries } from "../contract/stream-fields.ts";
import { apply } from "../engine/core/apply.ts";
import { makeParams } from "../engine/core/params.ts";
import { createState } from "../engine/core/state.ts";
import { isAfterId } from "../engine/core/step.ts";
import { createLogger } from "../platform/log.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { catchUp, oweAndAcknowledge, owedEntries, settleOwed } from "./postgres-backlog.ts";
import { ensureGroup, runWorker } from "./worker.ts";

let redis: Redis;
let prefix: string;

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
  prefix = `test:${randomUUID()}:`;
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

/** A keyspace whose engine:output holds `ids`, all delivered to one worker and pending. */
async function pendingEntries(name: string, ids: readonly string[]) {
  const local = keyspace(`${prefix}${name}:`);
  for (const id of ids) await redis.xadd(local.output, id, "type", "quote_updated", "body", "{}");
  await ensureGroup(redis, local);
  await redis.xreadgroup("GROUP", local.workerGroup, "a", "STREAMS", local.output, ">");
  return local;
}

const pendingCount = async (local: ReturnType<typeof keyspace>) =>
  ((await redis.xpending(local.output, local.workerGroup)) as [number])[0];

describe("owing a batch", () => {
  it("leaves its entries pending when the backlog refuses the range", async () => {
    const local = await pendingEntries("owe-refused", ["5-1", "5-2"]);
    // Stands in for any refusal of the backlog's write.
    await redis.set(local.postgresBacklog, "not a sorted set");
    await expect(oweAndAcknowledge(redis, local, ["5-1", "5-2"])).rejects.toThrow("WRONGTYPE");
    expect(await pendingCount(local)).toBe(2);
  });

  it("takes back a range it added when nothing was pending, and keeps one already owed", async () => {
    const local = await pendingEntries("owe-none", ["5-1", "5-2"]);
    await redis.xack(local.output, local.workerGroup, "5-1", "5-2");
    expect(await oweAndAcknowledge(redis, local, ["5-1", "5-2"])).toBe(0);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
    // The same range owed already (another worker owed the batch first): still owed.
    await redis.zadd(local.postgresBacklog, 5, "5-1 5-2 2");
    expect(await oweAndAcknowledge(redis, local, ["5-1", "5-2"])).toBe(0);
    expect(await redis.zrange(local.postgresBacklog, "0", "-1")).toEqual(["5-1 5-2 2"]);
  });
});

describe("the backlog's count", () => {
  it("is kept by the scripts that owe and settle ranges, not read from the ranges", async () => {
    const local = await pendingEntries("count", ["6-1", "6-2", "6-3", "6-4", "6-5"]);
    expect(await owedEntries(redis, local)).toBe(0);
    await oweAndAcknowledge(redis, local, ["6-1", "6-2"]);
    await oweAndAcknowledge(redis, local, ["6-3", "6-4", "6-5"]);
    expect(await redis.get(local.postgresBacklogEntries)).toBe("5");
    expect(await owedEntries(redis, local)).toBe(5);
    // Two lanes that wrote the same range settle it both: counted off once.
    await settleOwed(redis, local, ["6-1 6-2 2"]);
    await settleOwed(redis, local, ["6-1 6-2 2"]);
    expect(await owedEntries(redis, local)).toBe(3);
    await catchingUp(local, 10).run();
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
    expect(await owedEntries(redis, local)).toBe(0);
    // Nothing owed, nothing kept.
    expect(await redis.exists(local.postgresBacklogEntries)).toBe(0);
  });

  it("is counted from the ranges once when ranges are owed without it", async () => {
    const local = keyspace(`${prefix}count-missing:`);
    await redis.zadd(local.postgresBacklog, 7, "7-1 7-4 4", 7, "7-5 7-6 2");
    expect(await owedEntries(redis, local)).toBe(6);
    expect(await redis.get(local.postgresBacklogEntries)).toBe("6");
    await settleOwed(redis, local, ["7-5 7-6 2"]);
    expect(await owedEntries(redis, local)).toBe(4);
  });
});

/** A catch-up of `local` that writes nothing, counting the pages it writes and keeping its log lines. */
function catchingUp(local: ReturnType<typeof keyspace>, pageSize: number, onPage?: () => void) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("test", { level: "info", sink: (line) => lines.push(JSON.parse(line) as never) });
  let pages = 0;
  const stop = new AbortController();
  const run = () =>
    catchUp({
      redis,
      keys: local,
      pageSize,
      bound: (work) => work,
      write: () => {
        pages++;
        onPage?.();
        return Promise.resolve();
      },
      log,
      stop: stop.signal,
    });
  return { lines, pages: () => pages, stop, run };
}

describe("catching up", () => {
  it("logs a range whose entries are gone, and settles it", async () => {
    const local = await pendingEntries("missing", ["8-4", "8-5"]);
    await redis.zadd(local.postgresBacklog, 8, "8-1 8-3 3", 8, "8-4 8-5 2");
    // Its first entry gone, the rest there.
    await redis.zadd(local.postgresBacklog, 9, "9-1 9-2 2");
    await redis.xadd(local.output, "9-2", "type", "quote_updated", "body", "{}");
    const c = catchingUp(local, 10);
    expect(await c.run()).toEqual({ entries: 3, caughtUp: true });
    expect(c.lines.filter((l) => l.event === "postgres_backlog_missing")).toEqual([
      expect.objectContaining({ level: "error", first: "8-1", last: "8-3", entries: 3 }),
      expect.objectContaining({ level: "error", first: "9-1", last: "9-2", entries: 2 }),
    ]);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
  });

  it("stops between two pages of a range, which stays owed, and says it did not catch up", async () => {
    const local = await pendingEntries("stop", ["4-1", "4-2", "4-3", "4-4", "4-5"]);
    await redis.zadd(local.postgresBacklog, 4, "4-1 4-5 5");
    const c = catchingUp(local, 2, () => c.stop.abort());
    expect(await c.run()).toEqual({ entries: 2, caughtUp: false });
    expect(c.pages()).toBe(1);
    expect(await redis.zrange(local.postgresBacklog, "0", "-1")).toEqual(["4-1 4-5 5"]);
  });
});

describe("catching up many ranges", () => {
  it("reads adjacent ranges as one run and settles them together", async () => {
    const ids = ["2-1", "2-2", "2-3", "2-4"];
    const local = await pendingEntries("merged", ids);
    for (const id of ids) await redis.zadd(local.postgresBacklog, 2, `${id} ${id} 1`);
    const c = catchingUp(local, 10);
    expect(await c.run()).toEqual({ entries: 4, caughtUp: true });
    expect(c.pages()).toBe(1);
    expect(await owedEntries(redis, local)).toBe(0);
  });

  it("does not read the entries between two ranges a page apart", async () => {
    const ids = Array.from({ length: 9 }, (_, n) => `3-${n + 1}`);
    const local = await pendingEntries("apart", ids);
    await redis.zadd(local.postgresBacklog, 3, "3-1 3-1 1", 3, "3-9 3-9 1");
    const c = catchingUp(local, 2);
    // 3-1 and 3-2 in one page, then 3-9.
    expect(await c.run()).toEqual({ entries: 3, caughtUp: true });
    expect(c.pages()).toBe(2);
    expect(await redis.zcard(local.postgresBacklog)).toBe(0);
  });

  it("waits while another worker holds the lease, and stops once it lost it", async () => {
    const local = await pendingEntries("lease", ["1-1", "1-2", "1-3", "1-4"]);
    await redis.zadd(local.postgresBacklog, 1, "1-1 1-4 4");
    await redis.set(local.postgresCatchUpLease, "another", "PX", 60_000);
    const waiting = catchingUp(local, 2);
    expect(await waiting.run()).toEqual({ entries: 0, caughtUp: false });
    expect(waiting.pages()).toBe(0);
    expect(await redis.get(local.postgresCatchUpLease)).toBe("another");

    await redis.del(local.postgresCatchUpLease);
    // Its lease ran out under the first page and another worker took it.
    const losing = catchingUp(local, 2, () => void redis.set(local.postgresCatchUpLease, "another"));
    expect(await losing.run()).toEqual({ entries: 2, caughtUp: false });
    expect(await redis.zrange(local.postgresBacklog, "0", "-1")).toEqual(["1-1 1-4 4"]);
    // Not released: it is the other worker's.
    expect(await redis.get(local.postgresCatchUpLease)).toBe("another");

    await redis.del(local.postgresCatchUpLease);
    const holding = catchingUp(local, 2);
    expect(await holding.run()).toEqual({ entries: 4, caughtUp: true });
    expect(await redis.exists(local.postgresCatchUpLease)).toBe(0);
  });
});

describe("a batch handled while Postgres is down", () => {
  it("is owed before its answers go out: an answer is never readable while its batch is not owed", async () => {
    const local = keyspace(`${prefix}owed-first:`);
    await ensureGroup(redis, local);
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    const db = { query: () => Promise.reject(refused) };
    const reader = new Redis(TEST_REDIS_URL);
    const api = new Redis(TEST_REDIS_URL);
    const stop = new AbortController();
    // Postgres is not tried again during the test, so nothing writes the backlog but the batches.
    const retry = { firstMs: 60_000, maxMs: 60_000 };
    const log = createLogger("worker-test", { level: "error" });
    const options = { reader, writer: redis, db, keys: local, log, consumer: "w", blockMs: 50, postgresRetry: retry };
    const running = runWorker({ ...options, claimIdleMs: 60_000, statsEveryMs: 60_000 }, stop.signal);
    running.catch(() => undefined);
    try {
      const state = createState(makeParams({ shard: 400 }));
      for (let n = 0; n < 10; n++) {
        // Nothing owed before the batch, as at an outage's first batch, or after a catch-up emptied the backlog.
        await redis.del(local.postgresBacklog, local.postgresBacklogEntries);
        const ms = 2_000_000_300_000 + 2 * n;
        const id = `${ms + 1}-0`;
        const user = `u${n}`;
        // One batch: a price, whose candle is a Postgres write, and an instruction answered.
        const bid = String(2000 + n);
        const price: EngineInput = {
          type: "price_update",
          market: "ETH_USDC_PERP",
          bid,
          ask: bid,
          exchangeTimeUs: `${ms}000`,
          source: "sim",
        };
        const message: EngineInput = {
          type: "user_instruction",
          userId: user,
          requestId: "r",
          instruction: { kind: "create_account" },
        };
        const outputs = [...apply(state, { id: `${ms}-0`, message: price }), ...apply(state, { id, message })];
        const added = redis.multi();
        for (const fields of outputEntries(outputs)) added.xadd(local.output, "*", ...fields);
        const entryIds = ((await added.exec()) ?? []).map(([, entryId]) => String(entryId));
        expect(await api.blpop(local.responseKey(user, id), 5)).not.toBeNull();
        // Looked at as the API does (functions/routes/trade-terms.ts), the answer in hand: its batch is owed.
        const owed = (await api.zrange(local.postgresBacklog, "0", "-1")).map((member) => member.split(" "));
        const covered = (entryId: string) =>
          owed.some(([first, last]) => !isAfterId(first!, entryId) && !isAfterId(entryId, last!));
        expect(entryIds.filter((entryId) => !covered(entryId))).toEqual([]);
      }
    } finally {
      stop.abort();
      await running.catch(() => undefined);
      reader.disconnect();
      api.disconnect();
    }
  });
});
