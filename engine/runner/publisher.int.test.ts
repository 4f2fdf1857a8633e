import { afterAll, describe, expect, it } from "vitest";
import type { EngineInput, EngineOutput, Instruction } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { decodeOutputFields, outputEntries } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { scratchKeyspaces } from "../../platform/testing/redis-keys.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { apply } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { recordPublishCalls } from "../testing/publish-calls.ts";
import { EngineLease } from "./lease.ts";
import { FencedError, PUBLISH_MAX_BYTES, publishOutputs } from "./publisher.ts";

const log = createLogger("publisher-test", { level: "error" });
const scratch = scratchKeyspaces(TEST_REDIS_URL);
const { redis, freshKeys } = scratch;
afterAll(() => scratch.close());

async function leaseOn(keys: Keyspace): Promise<EngineLease> {
  const lease = new EngineLease(redis, keys, "a", 60_000, log);
  expect(await lease.tryAcquire()).toBe(true);
  return lease;
}

/** The outputs of one create_account per input id, in order: a step's worth of outputs each. */
function stepsAt(...ids: string[]): EngineOutput[][] {
  const state = createState(makeParams());
  return ids.map((id, i) =>
    apply(state, {
      id,
      message: {
        type: "user_instruction",
        userId: `u${i}`,
        requestId: "r1",
        instruction: { kind: "create_account" },
      },
    }),
  );
}

/**
 * One price that fires the stop loss of `users` trades at once, one each: a single step whose outputs (the quote,
 * then each stop's close and its balances, ~740 bytes a stop) pass PUBLISH_MAX_BYTES from about 1,400 stops.
 */
function massStop(users: number): { id: string; outputs: EngineOutput[] } {
  const state = createState(makeParams());
  const ms = 1_800_000_000_000;
  let seq = 0;
  const step = (message: EngineInput) => apply(state, { id: `${ms}-${seq++}`, message });
  const eth = (bid: string): EngineInput => ({
    type: "price_update",
    market: "ETH_USDC_PERP",
    bid,
    ask: bid,
    exchangeTimeUs: `${ms}000`,
    source: "sim",
  });
  step(eth("2000"));
  for (let i = 0; i < users; i++) {
    const user = (requestId: string, instruction: Instruction) =>
      step({ type: "user_instruction", userId: `u${i}`, requestId, instruction });
    user("r1", { kind: "create_account" });
    const opening = user("r2", {
      kind: "open_trade",
      asset: "ETH",
      side: "long",
      margin: "100",
      leverage: 10,
      stopLoss: "1950",
    });
    expect(opening.find((o) => o.type === "order_response")).toMatchObject({ answer: { ok: true } });
  }
  const id = `${ms}-${seq}`;
  const outputs = step(eth("1900"));
  expect(outputs.filter((o) => o.type === "closed_order")).toHaveLength(users);
  return { id, outputs };
}

async function rawEntries(keys: Keyspace): Promise<string[][]> {
  return ((await redis.xrange(keys.output, "-", "+")) as [string, string[]][]).map(([, fields]) => fields);
}

async function published(keys: Keyspace): Promise<EngineOutput[]> {
  const entries = (await redis.xrange(keys.output, "-", "+")) as [string, string[]][];
  return entries.map(([, fields]) => {
    const decoded = decodeOutputFields(fields);
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.message;
  });
}

describe("publishing outputs on real Redis", () => {
  it("publishes a batch run again (same input id, same outputs) once, and still extends the lease", async () => {
    const keys = freshKeys();
    const lease = await leaseOn(keys);
    const [step] = stepsAt("1800000000000-0");
    await publishOutputs(redis, keys, lease, "1800000000000-0", step!);
    await redis.pexpire(keys.engineLease, 1_000);

    await publishOutputs(redis, keys, lease, "1800000000000-0", step!);

    expect(await published(keys)).toEqual(step);
    expect(await redis.get(keys.enginePublished)).toBe("1800000000000-0");
    expect(await redis.pttl(keys.engineLease)).toBeGreaterThan(50_000);
  });

  it("publishes nothing for a batch at or below the cursor and never moves it back; ids compare as numbers", async () => {
    const keys = freshKeys();
    const lease = await leaseOn(keys);
    // As strings, each id sorts before the one above it: a 12-digit ms before a 13-digit one, seq 9 after seq 10.
    const ids = ["999999999999-5", "1000000000000-9", "1000000000000-10"];
    const steps = stepsAt(...ids);
    for (const [i, id] of ids.entries()) await publishOutputs(redis, keys, lease, id, steps[i]!);
    expect(await published(keys)).toEqual(steps.flat());

    // Replays from further back: the first two steps again, then the first alone.
    await publishOutputs(redis, keys, lease, ids[1]!, [...steps[0]!, ...steps[1]!]);
    await publishOutputs(redis, keys, lease, ids[0]!, steps[0]!);
    await publishOutputs(redis, keys, lease, "0-0", []);

    expect(await published(keys)).toEqual(steps.flat());
    expect(await redis.get(keys.enginePublished)).toBe("1000000000000-10");
    // The next input goes out, and the cursor moves on.
    const [next] = stepsAt("1000000000001-0");
    await publishOutputs(redis, keys, lease, "1000000000001-0", next!);
    expect(await published(keys)).toEqual([...steps.flat(), ...next!]);
    expect(await redis.get(keys.enginePublished)).toBe("1000000000001-0");
  });

  it("publishes each output once when the publish's reply is lost with the connection and ioredis resends it", async () => {
    const keys = freshKeys();
    const lease = await leaseOn(keys);
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const writer = connectRedis(`redis://127.0.0.1:${proxy.port}`, log, "publisher-test");
    try {
      const [step] = stepsAt("1800000000000-0");
      const dropped = proxy.dropReplyTo(keys.output);
      await publishOutputs(writer, keys, lease, "1800000000000-0", step!);
      await dropped;

      const ids = (await published(keys)).map((o) => o.id);
      expect(ids).toEqual(step!.map((o) => o.id));
      expect(await redis.get(keys.enginePublished)).toBe("1800000000000-0");
    } finally {
      writer.disconnect();
      await proxy.close();
    }
  });

  it("publishes a step too large for one call in parts, in order, each within the bound; only the last moves the cursor", async () => {
    const keys = freshKeys();
    const lease = await leaseOn(keys);
    const { id, outputs } = massStop(3_000);
    await redis.set(keys.enginePublished, "1799999999999-0");
    const { writer, calls } = recordPublishCalls(TEST_REDIS_URL, keys);
    try {
      await publishOutputs(writer, keys, lease, id, outputs);

      expect(calls.length).toBeGreaterThanOrEqual(3);
      expect(Math.max(...calls.map((c) => c.bytes))).toBeLessThanOrEqual(PUBLISH_MAX_BYTES);
      expect(calls.map((c) => c.cursorBefore)).toEqual(calls.map(() => "1799999999999-0"));
      expect(calls.map((c) => c.last)).toEqual([...calls.slice(1).map(() => "0"), "1"]);
      expect(await redis.get(keys.enginePublished)).toBe(id);
      // The entries one call would have written: the same order, each `more` worked out over the whole step.
      expect(await rawEntries(keys)).toEqual(outputEntries(outputs));

      // Published again (a replay): out already, so one call, which adds nothing and only extends the lease.
      await redis.pexpire(keys.engineLease, 1_000);
      const parts = calls.length;
      await publishOutputs(writer, keys, lease, id, outputs);
      expect(calls.length).toBe(parts + 1);
      expect(await redis.xlen(keys.output)).toBe(outputs.length);
      expect(await redis.pttl(keys.engineLease)).toBeGreaterThan(50_000);
    } finally {
      writer.disconnect();
    }
  });

  it("fenced between two parts of a step: the next leader publishes the whole step, and only it moves the cursor", async () => {
    const keys = freshKeys();
    const a = await leaseOn(keys);
    const { id, outputs } = massStop(2_000);
    // Another engine takes the lease once the first part is out (this one stalled past its TTL, say).
    const { writer, calls } = recordPublishCalls(TEST_REDIS_URL, keys, async (index) => {
      if (index === 0) await redis.set(keys.engineLease, "b:999", "PX", 60_000);
    });
    try {
      await expect(publishOutputs(writer, keys, a, id, outputs)).rejects.toBeInstanceOf(FencedError);
      expect(calls.length).toBe(2);
      const prefix = await rawEntries(keys);
      expect(prefix.length).toBeGreaterThan(0);
      expect(prefix).toEqual(outputEntries(outputs).slice(0, prefix.length));
      expect(await redis.get(keys.enginePublished)).toBeNull();

      await redis.del(keys.engineLease);
      const b = new EngineLease(redis, keys, "b", 60_000, log);
      expect(await b.tryAcquire()).toBe(true);
      await publishOutputs(redis, keys, b, id, outputs);
      expect(await rawEntries(keys)).toEqual([...prefix, ...outputEntries(outputs)]);
      expect(await redis.get(keys.enginePublished)).toBe(id);
    } finally {
      writer.disconnect();
    }
  });
});
