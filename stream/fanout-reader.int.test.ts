// The fan-out reader on real Redis: a reader the trim passed while it lagged says so before it goes on, and one that
// keeps up reads nothing more than its XREADs but after a full one.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { fanoutTail, startFanoutReader } from "./fanout-reader.ts";

const prefix = `t-f-${randomUUID()}:`;
let redis: Redis;

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL);
});

afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  redis.disconnect();
});

/**
 * A reader of `key` on its own connection, reading `batch` entries at a time. What it saw goes into `seen` in order:
 * each entry's id, and "recovered" for each onRecovered. `stall` holds its reads, as a stalled process would (a BLPOP
 * on its connection: Redis runs the next XREAD only after it), until `resume`.
 */
async function startReader(key: string, batch: number) {
  const conn = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  let ranges = 0;
  const xrange = conn.xrange.bind(conn);
  conn.xrange = ((...args: Parameters<typeof xrange>) => {
    ranges++;
    return xrange(...args);
  }) as typeof conn.xrange;
  const seen: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const stop = new AbortController();
  const reading = startFanoutReader(
    {
      redis: conn,
      key,
      from: await fanoutTail(conn, key),
      log: createLogger("fanout-test", { level: "warn", sink: (line) => logs.push(JSON.parse(line) as never) }),
      onEntry: (id) => seen.push(id),
      onRecovered: () => seen.push("recovered"),
      blockMs: 50,
      batch,
    },
    stop.signal,
  );
  const gate = `${prefix}gate:${randomUUID()}`;
  let held: Promise<unknown> | undefined;
  return {
    seen,
    logs,
    ranges: () => ranges,
    async stall() {
      held = conn.blpop(gate, 0);
      await new Promise((r) => setTimeout(r, 200)); // the read under way (BLOCK 50 ms) ends; the next one waits
    },
    async resume() {
      await redis.lpush(gate, "go");
      await held;
    },
    async close() {
      stop.abort();
      conn.disconnect();
      await reading.done;
    },
  };
}

async function add(key: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await redis.xadd(key, "*", "kind", "test", "body", String(i)))!);
  return ids;
}

async function until(probe: () => boolean, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  while (!probe()) {
    if (Date.now() - start > timeoutMs) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("fan-out reader", () => {
  it("says so, before the entries after it, when the trim passed it while it lagged", async () => {
    const key = `${prefix}{stream}:fanout:trimmed`;
    await add(key, 1);
    const reader = await startReader(key, 5);
    const [first] = await add(key, 1);
    await until(() => reader.seen.length === 1);
    await reader.stall();
    // Twenty more come while it reads nothing; the trim keeps the last ten.
    const later = await add(key, 20);
    await redis.xtrim(key, "MAXLEN", 10);
    await reader.resume();
    await until(() => reader.seen.includes(later.at(-1)!));
    expect(reader.seen).toEqual([first, "recovered", ...later.slice(10)]);
    expect(reader.logs).toEqual([
      expect.objectContaining({ event: "fanout_fell_behind", from: first, oldestKept: later[10] }),
    ]);
    await reader.close();
  });

  it("looks at the oldest entry only after a full read, and finds nothing missed when the trim did not pass it", async () => {
    const key = `${prefix}{stream}:fanout:kept`;
    await add(key, 1);
    const reader = await startReader(key, 5);
    const live = await add(key, 3);
    await until(() => reader.seen.length === 3);
    expect(reader.ranges()).toBe(0);
    await reader.stall();
    const later = await add(key, 12); // read as 5, 5 and 2
    await reader.resume();
    await until(() => reader.seen.length === 15);
    expect(reader.seen).toEqual([...live, ...later]);
    expect(reader.ranges()).toBe(2);
    expect(reader.logs).toEqual([]);
    await reader.close();
  });
});
