// What PriceFeed hands each FeedClient it starts: the book-silence bound from the configuration (main.ts passes
// POLLER_BOOK_SILENCE_MS), next to the timing knobs; and that a start whose read of the last quotes fails or never
// answers goes on, or, once stopped, ends without a word. FeedClient is replaced by a recorder, so no socket is
// opened.
import { afterEach, describe, expect, it, vi } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import type { FeedClientOptions } from "./feed-client.ts";
import { PriceFeed } from "./price-feed.ts";
import { captureLog } from "./test-support.ts";

const constructed = vi.hoisted(() => [] as FeedClientOptions[]);
vi.mock("./feed-client.ts", () => ({
  FeedClient: class {
    readonly state = "connecting";
    constructor(options: FeedClientOptions) {
      constructed.push(options);
    }
    start(): void {}
    async stop(): Promise<void> {}
  },
}));

afterEach(() => void constructed.splice(0));

function backpackFeed(options: Partial<ConstructorParameters<typeof PriceFeed>[0]>): PriceFeed {
  return new PriceFeed({
    mode: "backpack",
    backpackWsUrl: "ws://127.0.0.1:1",
    simWsUrl: undefined,
    markets: ASSETS,
    onUpdate: () => undefined,
    log: captureLog().log,
    client: { silenceMs: 2_000 },
    ...options,
  });
}

describe("PriceFeed", () => {
  it("passes bookSilenceMs to its FeedClient", async () => {
    const feed = backpackFeed({ bookSilenceMs: 120_000 });
    await feed.start();
    expect(constructed).toHaveLength(1);
    expect(constructed[0]).toMatchObject({ url: "ws://127.0.0.1:1", bookSilenceMs: 120_000, silenceMs: 2_000 });
    await feed.stop();
  });

  it("leaves the FeedClient's default when no bound is given", async () => {
    const feed = backpackFeed({});
    await feed.start();
    expect(constructed[0]?.bookSilenceMs).toBeUndefined();
    await feed.stop();
  });

  it("connects a live start without the last quotes when Redis does not answer for them in time", async () => {
    const { log, lines } = captureLog();
    const never = new Promise<never>(() => undefined); // a Redis that accepts the connection and answers nothing
    const feed = backpackFeed({ log, lastQuotes: () => never, lastQuotesWaitMs: 50 });
    await feed.start();
    expect(constructed).toHaveLength(1);
    expect(lines.filter((l) => l.event === "feed_last_quotes_unread")).toEqual([
      expect.objectContaining({ level: "warn", error: "no answer within 50 ms" }),
    ]);
    await feed.stop();
  });

  it("connects a live start without the last quotes when reading them fails", async () => {
    const { log, lines } = captureLog();
    const feed = backpackFeed({ log, lastQuotes: () => Promise.reject(new Error("READONLY")) });
    await feed.start();
    expect(constructed).toHaveLength(1);
    expect(lines.filter((l) => l.event === "feed_last_quotes_unread")).toEqual([
      expect.objectContaining({ error: "Error: READONLY" }),
    ]);
    await feed.stop();
  });

  // main.ts drops the read connection at a stop, which fails a read still waiting for Redis.
  it.each(["sim", "backpack"] as const)("ends a %s start quietly when a stop fails its read", async (mode) => {
    const { log, lines } = captureLog();
    let fail: (error: Error) => void = () => undefined;
    const read = new Promise<never>((_, reject) => (fail = reject));
    const feed = backpackFeed({ mode, log, lastQuotes: () => read });
    const started = feed.start();
    await feed.stop();
    fail(new Error("Connection is closed."));
    await expect(started).resolves.toBeUndefined();
    expect(constructed).toEqual([]);
    const said = lines.filter((l) => l.level !== "info").map((l) => l.event);
    expect(said).toEqual(mode === "sim" ? ["feed_simulated"] : []);
  });
});
