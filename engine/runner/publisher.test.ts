// The publisher's bound on each call, counted in bytes on the wire, with a Redis that only measures what it is sent.
import { expect, it } from "vitest";
import type { EngineOutput } from "../../contract/messages.ts";
import { keyspace } from "../../contract/names.ts";
import { PUBLISH_MAX_BYTES, publishOutputs } from "./publisher.ts";

/** A stand-in for the writer's eval: each call's size in RESP (as ioredis writes it) and its outputs' bodies. */
function measuringRedis(): { redis: never; sizes: number[]; bodies: string[] } {
  const sizes: number[] = [];
  const bodies: string[] = [];
  const fake = {
    eval: (...args: unknown[]) => {
      const strings = ["EVAL", ...args.map(String)];
      let bytes = `*${strings.length}\r\n`.length;
      for (const s of strings) {
        const n = Buffer.byteLength(s);
        bytes += `$${n}\r\n`.length + n + 2;
      }
      sizes.push(bytes);
      // EVAL script 3 keys…, then lease, through, ttl, last, then type/body/more per output.
      const outputs = strings.slice(10);
      for (let i = 1; i < outputs.length; i += 3) bodies.push(outputs[i]!);
      return Promise.resolve(outputs.length / 3);
    },
  };
  return { redis: fake as never, sizes, bodies };
}

/** `count` refusals that each echo `asset` (UNKNOWN_ASSET echoes up to 32 characters of any kind). */
function refusals(count: number, asset: string): EngineOutput[] {
  return Array.from({ length: count }, (_, i) => ({
    type: "order_response",
    id: `1800000000000-${i}:0`,
    inputId: `1800000000000-${i}`,
    requestId: `r${i}`,
    userId: `u${i}`,
    answer: {
      ok: false,
      error: {
        code: "UNKNOWN_ASSET",
        message: `asset must be one of ETH, BTC, SOL, ADA; received ${JSON.stringify(asset)}.`,
      },
    },
  })) as unknown as EngineOutput[];
}

const lease = { value: "x", ttlMs: 1000 };

it("keeps each call within PUBLISH_MAX_BYTES on the wire when the outputs are not ASCII", async () => {
  const { redis, sizes, bodies } = measuringRedis();
  const outputs = refusals(6000, "€".repeat(32));
  await publishOutputs(redis, keyspace("review:"), lease, "1800000000000-5999", outputs);
  expect(Math.max(...sizes)).toBeLessThanOrEqual(PUBLISH_MAX_BYTES);
  expect(bodies).toEqual(outputs.map((o) => JSON.stringify(o)));
});

it("sends an output larger than PUBLISH_MAX_BYTES on its own alone in its call", async () => {
  const { redis, sizes, bodies } = measuringRedis();
  const outputs = refusals(3, "x");
  const huge = refusals(1, "€".repeat(PUBLISH_MAX_BYTES / 3))[0]!;
  await publishOutputs(redis, keyspace("review:"), lease, "1800000000000-3", [outputs[0]!, huge, ...outputs.slice(1)]);
  expect(sizes.length).toBe(3);
  expect(sizes[1]).toBeGreaterThan(PUBLISH_MAX_BYTES);
  expect(bodies[1]).toBe(JSON.stringify(huge));
});
