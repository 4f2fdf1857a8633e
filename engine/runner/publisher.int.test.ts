import { afterAll, describe, expect, it } from "vitest";
import type { EngineOutput } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { decodeOutputFields } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { scratchKeyspaces } from "../../platform/testing/redis-keys.ts";
import { startRedisProxy } from "../../platform/testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import { apply } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { EngineLease } from "./lease.ts";
import { publishOutputs } from "./publisher.ts";

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
});
