// The frames the real stream server sends fit the types of client/protocol.ts, which a frontend compiles against:
// each schema below is checked by tsc to describe exactly its protocol type, and here at run time against what the
// server sends for each request. Private frames are built from the contract's own schemas (private.int.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ASSET_SYMBOLS,
  type CandleFrame,
  type ErrorFrame,
  type HeartbeatFrame,
  type PongFrame,
  type QuoteFrame,
  type SubscribedFrame,
  type UnsubscribedFrame,
  type WelcomeFrame,
} from "../client/protocol.ts";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import { quoteOutput } from "./testing/quote-output.ts";
import { connectAs, fanOut, newUserId, startTestStream, type TestStream } from "./testing/stream-fixture.ts";

/** Readonly aside (JSON has none), and intersections flattened: the shape as a plain object type. */
type Plain<T> = T extends object ? { -readonly [K in keyof T]: Plain<T[K]> } : T;
/** True when A and B are the same type: the same fields, each optional or not alike, of the same types. */
type Same<A, B> = (<T>() => T extends Plain<A> ? 1 : 2) extends <T>() => T extends Plain<B> ? 1 : 2 ? true : false;

const id = z.union([z.string(), z.number()]).exactOptional();
const interval = z.enum(CANDLE_INTERVALS);
const asset = z.enum(ASSET_SYMBOLS);
const targets = [
  z.strictObject({ id, channel: z.literal("quotes"), assets: z.array(asset).readonly().exactOptional() }),
  z.strictObject({ id, channel: z.literal("candles"), asset, interval }),
  z.strictObject({ id, channel: z.literal("private"), since: z.number().exactOptional() }),
] as const;
/** subscribed / unsubscribed: the request's fields echoed (checked against the types below through `targets`). */
const answer = (type: string): z.ZodType => z.union(targets.map((target) => target.extend({ type: z.literal(type) })));

const schemas = {
  welcome: z.strictObject({
    type: z.literal("welcome"),
    userId: z.string(),
    heartbeatMs: z.number(),
    limits: z.strictObject({ maxMessagesPerSec: z.number(), maxSubscriptions: z.number(), maxFrameBytes: z.number() }),
  }),
  subscribed: answer("subscribed"),
  unsubscribed: answer("unsubscribed"),
  pong: z.strictObject({ type: z.literal("pong"), id }),
  error: z.strictObject({
    type: z.literal("error"),
    code: z.string(),
    message: z.string(),
    field: z.string().exactOptional(),
    id,
  }),
  heartbeat: z.strictObject({ type: z.literal("heartbeat"), time: z.string() }),
  quote: z.strictObject({
    type: z.literal("quote"),
    asset: z.string(),
    market: z.string(),
    bid: z.string(),
    ask: z.string(),
    updatedAt: z.string(),
    source: z.enum(["backpack", "sim"]),
  }),
  candle: z.strictObject({
    type: z.literal("candle"),
    asset: z.string(),
    interval,
    openTime: z.string(),
    open: z.string(),
    high: z.string(),
    low: z.string(),
    close: z.string(),
  }),
};

// Compile-time: each schema is its protocol type. A field the server sends but the type lacks (or the other way
// round) fails tsc here, and the parse below.
const typed: [
  Same<z.infer<typeof schemas.welcome>, WelcomeFrame>,
  Same<z.infer<(typeof targets)[number]> & { type: "subscribed" }, SubscribedFrame>,
  Same<z.infer<(typeof targets)[number]> & { type: "unsubscribed" }, UnsubscribedFrame>,
  Same<z.infer<typeof schemas.pong>, PongFrame>,
  Same<z.infer<typeof schemas.error>, ErrorFrame>,
  Same<z.infer<typeof schemas.heartbeat>, HeartbeatFrame>,
  Same<z.infer<typeof schemas.quote>, QuoteFrame>,
  Same<z.infer<typeof schemas.candle>, CandleFrame>,
] = [true, true, true, true, true, true, true, true];

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream({ heartbeatMs: 300 });
});

afterAll(async () => {
  await t.close();
});

describe("the server's frames fit client/protocol.ts", () => {
  it("welcome, subscribed, unsubscribed, pong, error, heartbeat, quote and candle", async () => {
    expect(typed.every(Boolean)).toBe(true);
    const client = await connectAs(t, newUserId());
    const requests = [
      { op: "subscribe", channel: "quotes", id: 1 },
      { op: "subscribe", channel: "quotes", assets: ["BTC"], id: "q" },
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
      { op: "subscribe", channel: "private" },
      { op: "unsubscribe", channel: "private", since: 3, id: 2 },
      { op: "unsubscribe", channel: "candles", asset: "BTC", interval: "1m" },
      { op: "unsubscribe", channel: "quotes", assets: ["ETH"] },
      { op: "ping", id: "a" },
      { op: "ping", id: 7 },
      { op: "ping" },
      { op: "subscribe", channel: "private" },
      { op: "subscribe", channel: "private", id: 3 }, // ALREADY_SUBSCRIBED, with a field and the id
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "2m", id: "c" }, // INVALID_FRAME, the id
    ];
    for (const request of requests) client.send(request);
    client.send("{");
    client.send({ op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" });
    await client.until((f) => f.filter((x) => x.type === "error").length === 3);
    await fanOut(t, "quote", quoteOutput("BTC", "60000"));
    await fanOut(t, "candle", {
      asset: "BTC",
      interval: "1m",
      openTime: "2027-01-15T10:00:00.000Z",
      open: "60000",
      high: "60000",
      low: "60000",
      close: "60000",
    });
    await client.until((f) => ["quote", "candle", "heartbeat"].every((type) => f.some((x) => x.type === type)));
    const seen = new Set<string>();
    for (const frame of client.frames) {
      const schema = schemas[frame.type as keyof typeof schemas] as z.ZodType | undefined;
      if (schema === undefined) continue; // the private channel's: private.int.test.ts
      seen.add(frame.type);
      expect(schema.safeParse(frame).error?.issues, JSON.stringify(frame)).toBeUndefined();
    }
    expect([...seen].sort()).toEqual(Object.keys(schemas).sort());
    expect(client.of("unsubscribed")).toContainEqual({ type: "unsubscribed", id: 2, channel: "private", since: 3 });
    expect(client.of("subscribed").slice(0, 2)).toEqual([
      { type: "subscribed", id: 1, channel: "quotes" },
      { type: "subscribed", id: "q", channel: "quotes", assets: ["BTC"] },
    ]);
    expect(client.of("error").map((e) => [e.code, e.id])).toEqual([
      ["ALREADY_SUBSCRIBED", 3],
      ["INVALID_FRAME", "c"],
      ["MALFORMED_JSON", undefined],
    ]);
    expect(client.of("pong")).toEqual([{ type: "pong", id: "a" }, { type: "pong", id: 7 }, { type: "pong" }]);
    client.close();
  });
});
