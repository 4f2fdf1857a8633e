/**
 * The durability check every process runs at start, against real Redis servers: one with AOF, one without, and one
 * that does not expose CONFIG (as managed Redis such as Upstash does not). Then the connection through an outage,
 * and its options, through a proxy that fails as a network does.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
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

async function check(extra: string[]) {
  const dir = mkdtempSync(join(tmpdir(), "redis-durability-"));
  dirs.push(dir);
  const port = await freePort();
  servers.push(await startRedisServer(port, dir, extra));
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("test", { sink: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const redis = connectRedis(`redis://127.0.0.1:${port}`, log, "durability-test");
  try {
    return { result: await checkDurability(redis, log), events: lines.map((l) => l.event) };
  } finally {
    redis.disconnect();
  }
}

describe("checkDurability", () => {
  it("warns loudly when AOF is off", async () => {
    const { result, events } = await check(["--appendonly", "no", "--save", ""]);
    expect(result.appendonly).toBe(false);
    expect(events).toContain("redis_aof_off");
  });

  it("reports the fsync policy when AOF is on", async () => {
    const { result, events } = await check(["--appendonly", "yes", "--appendfsync", "always"]);
    expect(result).toEqual({ appendonly: true, fsync: "always" });
    expect(events).toEqual(["redis_durability"]);
  });

  it("does not cry wolf when the Redis does not expose CONFIG", async () => {
    const { result, events } = await check(["--rename-command", "CONFIG", ""]);
    expect(result.appendonly).toBeUndefined();
    expect(events).toEqual(["redis_durability"]);
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
