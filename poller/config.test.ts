// The poller's environment: defaults for a local run, and a clear refusal of every bad value.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../platform/config.ts";
import { readPollerConfig } from "./config.ts";

describe("readPollerConfig", () => {
  it("defaults to local Redis, no prefix, auto feed, the live Backpack URL and a 15 s bound on a silent book", () => {
    expect(readPollerConfig({})).toEqual({
      redisUrl: "redis://127.0.0.1:6379",
      keyPrefix: "",
      feed: "auto",
      backpackWsUrl: "wss://ws.backpack.exchange",
      simWsUrl: undefined,
      bookSilenceMs: 15_000,
    });
  });

  it("reads every variable", () => {
    const env = {
      REDIS_URL: "rediss://cache.example:6380",
      KEY_PREFIX: "staging:",
      FEED: "sim",
      BACKPACK_WS_URL: "ws://127.0.0.1:9001",
      SIM_WS_URL: "ws://127.0.0.1:9002",
      POLLER_BOOK_SILENCE_MS: "120000",
    };
    expect(readPollerConfig(env)).toEqual({
      redisUrl: "rediss://cache.example:6380",
      keyPrefix: "staging:",
      feed: "sim",
      backpackWsUrl: "ws://127.0.0.1:9001",
      simWsUrl: "ws://127.0.0.1:9002",
      bookSilenceMs: 120_000,
    });
  });

  it.each([
    [{ FEED: "live" }, "FEED must be one of auto, backpack, sim"],
    [{ REDIS_URL: "http://127.0.0.1:6379" }, "REDIS_URL must use redis: or rediss:"],
    [{ BACKPACK_WS_URL: "https://ws.backpack.exchange" }, "BACKPACK_WS_URL must use ws: or wss:"],
    [{ SIM_WS_URL: "not a url" }, "SIM_WS_URL is not a URL"],
    [{ KEY_PREFIX: "has space:" }, "KEY_PREFIX must be at most 64 printable ASCII characters"],
    [{ KEY_PREFIX: "x".repeat(65) }, "KEY_PREFIX must be at most 64"],
    [
      { POLLER_BOOK_SILENCE_MS: "999" },
      'POLLER_BOOK_SILENCE_MS must be a whole number from 1000 to 3600000, got "999"',
    ],
    [{ POLLER_BOOK_SILENCE_MS: "3600001" }, "POLLER_BOOK_SILENCE_MS must be a whole number from 1000 to 3600000"],
    [
      { POLLER_BOOK_SILENCE_MS: "15s" },
      'POLLER_BOOK_SILENCE_MS must be a whole number from 1000 to 3600000, got "15s"',
    ],
    [{ POLLER_BOOK_SILENCE_MS: "0" }, 'POLLER_BOOK_SILENCE_MS must be a whole number from 1000 to 3600000, got "0"'],
  ])("refuses %j", (env, message) => {
    expect(() => readPollerConfig(env)).toThrow(ConfigError);
    expect(() => readPollerConfig(env)).toThrow(message);
  });
});
