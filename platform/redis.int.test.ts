/**
 * The durability check the engine and worker run at start, against real Redis servers: one with AOF, one without, and
 * one that does not expose CONFIG (as managed Redis such as Upstash does not); then their eviction policy, which
 * must be noeviction, read from CONFIG or, where CONFIG is refused, from INFO. Then the connection through an outage,
 * and its options, through a proxy that fails as a network does.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "./config.ts";
import { createLogger } from "./log.ts";
import { connectRedis, checkDurability } from "./redis.ts";
import { freePort, startRedisServer, type Child } from "./testing/processes.ts";
import { startRedisProxy } from "./testing/redis-proxy.ts";
import { TEST_REDIS_URL } from "./testing/test-servers.ts";

const dirs: string[] = [];
const servers: Child[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop("SIGTERM")));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** checkDurability against a redis-server of its own started with `extra`: its result or error, and its log lines. */
async function attempt(extra: string[]) {
  const dir = mkdtempSync(join(tmpdir(), "redis-durability-"));
  dirs.push(dir);
  const port = await freePort();
  servers.push(await startRedisServer(port, dir, extra));
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("test", { sink: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const redis = connectRedis(`redis://127.0.0.1:${port}`, log, "durability-test");
  try {
    const result = await checkDurability(redis, log).then(
      (value) => ({ value, error: undefined }),
      (error: unknown) => ({ value: undefined, error }),
    );
    return { ...result, lines, events: lines.map((l) => l.event) };
  } finally {
    redis.disconnect();
  }
}

async function check(extra: string[]) {
  const { value, error, events } = await attempt(extra);
  if (value === undefined) throw error;
  return { result: value, events };
}

describe("checkDurability", () => {
  it("warns loudly when AOF is off", async () => {
    const { result, events } = await check(["--appendonly", "no", "--save", ""]);
    expect(result.appendonly).toBe(false);
    expect(events).toContain("redis_aof_off");
  });

  it("reports the fsync policy when AOF is on", async () => {
    const { result, events } = await check(["--appendonly", "yes", "--appendfsync", "always"]);
    expect(result).toEqual({ appendonly: true, fsync: "always", evictionPolicy: "noeviction" });
    expect(events).toEqual(["redis_durability"]);
  });

  it("does not cry wolf when the Redis does not expose CONFIG", async () => {
    const { result, events } = await check(["--rename-command", "CONFIG", ""]);
    expect(result.appendonly).toBeUndefined();
    expect(result.evictionPolicy).toBe("noeviction"); // from INFO memory
    expect(events).toEqual(["redis_durability"]);
  });
});

describe("checkDurability's eviction check", () => {
  it("passes a Redis that never evicts, set explicitly", async () => {
    const args = ["--appendonly", "yes", "--maxmemory-policy", "noeviction", "--maxmemory", "64mb"];
    const { result, events } = await check(args);
    expect(result.evictionPolicy).toBe("noeviction");
    expect(events).toEqual(["redis_durability"]);
  });

  it("refuses a Redis that may evict any key, naming the policy and the fix", async () => {
    const { error } = await attempt(["--maxmemory-policy", "allkeys-lru"]);
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain('maxmemory-policy must be noeviction, got "allkeys-lru"');
    expect(message).toContain("CONFIG SET maxmemory-policy noeviction");
    expect(message).toContain("Upstash, turn Eviction off");
  });

  it("refuses a Redis that may evict keys with a TTL (answers, the events store) too", async () => {
    const { error } = await attempt(["--maxmemory-policy", "volatile-lru", "--maxmemory", "64mb"]);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('got "volatile-lru"');
  });

  it("reads the policy from INFO memory where CONFIG is refused, and refuses an evicting one", async () => {
    const { error } = await attempt(["--rename-command", "CONFIG", "", "--maxmemory-policy", "allkeys-random"]);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('got "allkeys-random"');
  });

  it("warns, and starts, when the Redis reports its policy nowhere", async () => {
    // Both refused to this client, as a managed Redis's ACL may (Upstash answers CONFIG GET with nothing instead).
    const { value, lines } = await attempt([
      "--user",
      "default",
      "on",
      "nopass",
      "~*",
      "&*",
      "+@all",
      "-config",
      "-info",
    ]);
    expect(value?.evictionPolicy).toBeUndefined();
    const unchecked = lines.find((l) => l.event === "redis_eviction_unchecked");
    expect(unchecked).toMatchObject({ level: "warn" });
    expect(String(unchecked?.message)).toContain("Eviction setting off");
  });
});

describe("connectRedis's options", () => {
  const quiet = createLogger("test", { sink: () => undefined });

  it("keeps a command sent while Redis is down until it is back, however many reconnects fail meanwhile", async () => {
    const dir = mkdtempSync(join(tmpdir(), "redis-outage-"));
    dirs.push(dir);
    const port = await freePort();
    const args = ["--appendonly", "no", "--save", ""];
    const server = await startRedisServer(port, dir, args);
    servers.push(server);
    const redis = connectRedis(`redis://127.0.0.1:${port}`, quiet, "outage-test");
    try {
      expect(await redis.ping()).toBe("PONG");
      await server.stop("SIGTERM");
      const answer = redis.set("outage-test", "1");
      let settled = false;
      void answer.finally(() => (settled = true)).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // three reconnects fail meanwhile
      expect(settled).toBe(false);
      servers.push(await startRedisServer(port, dir, args));
      expect(await answer).toBe("OK");
    } finally {
      redis.disconnect();
    }
  });

  it("with resendUnanswered false, does not run again a command whose answer was lost with the connection", async () => {
    const key = `test:${randomUUID()}:counter`;
    const direct = new Redis(TEST_REDIS_URL);
    const proxy = await startRedisProxy(TEST_REDIS_URL);
    const runs = async (resendUnanswered: boolean) => {
      await direct.del(key);
      const redis = connectRedis(`redis://127.0.0.1:${proxy.port}`, quiet, "resend-test", { resendUnanswered });
      try {
        await redis.ping();
        const dropped = proxy.dropReplyTo(key);
        const answer = redis.incr(key);
        answer.catch(() => undefined);
        const ready = new Promise((resolve) => redis.once("ready", resolve));
        await dropped;
        await ready; // connected again: a command sent on the dropped connection is resent (or dropped) by now
        expect(await redis.ping()).toBe("PONG");
        return Number(await direct.get(key));
      } finally {
        redis.disconnect();
      }
    };
    try {
      expect(await runs(true)).toBe(2);
      expect(await runs(false)).toBe(1);
    } finally {
      await direct.del(key);
      direct.disconnect();
      await proxy.close();
    }
  });
});
