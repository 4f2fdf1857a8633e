/**
 * The durability check every process runs at start, against real Redis servers: one with AOF, one without, and one
 * that does not expose CONFIG (as managed Redis such as Upstash does not).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "./log.ts";
import { connectRedis, checkDurability } from "./redis.ts";
import { freePort, startRedisServer, type Child } from "./testing/processes.ts";

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
