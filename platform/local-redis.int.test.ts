import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureRedis, redisProblem, withRedis } from "./local-redis.ts";
import { choosePort, type LocalServer } from "./local-servers.ts";
import { createLogger } from "./log.ts";
import { freePort, startSilentServer } from "./testing/processes.ts";
import { TEST_REDIS_URL } from "./testing/test-servers.ts";

const events: string[] = [];
const lines: Record<string, unknown>[] = [];
const log = createLogger("local-redis-test", {
  sink: (line) => {
    lines.push(JSON.parse(line) as Record<string, unknown>);
    events.push(String(lines.at(-1)!.event));
  },
});
const PATH = process.env.PATH;
const dirs: string[] = [];
let deadUrl: string;

/** A fresh data folder, removed after the run. */
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "local-redis-test-"));
  dirs.push(dir);
  return dir;
}

const answersPing = async (url: string) => (await redisProblem(url)) === undefined;

beforeAll(async () => {
  // Nothing listens there: stands for "no Redis at 127.0.0.1:6379" on a machine that has one.
  deadUrl = `redis://127.0.0.1:${await freePort()}`;
});

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("ensureRedis", () => {
  it("uses REDIS_URL when it answers, even with redis-server on PATH, and says so when it does not", async () => {
    const redis = await ensureRedis({
      dataDir: await dataDir(),
      log,
      env: { REDIS_URL: TEST_REDIS_URL, LOCAL_REDIS_PROBE_URL: deadUrl, PATH },
      prefer: "own",
    });
    expect(redis).toMatchObject({ url: TEST_REDIS_URL, started: false });
    expect(lines.find((l) => l.event === "redis_configured")).toMatchObject({
      persistence: expect.any(String) as unknown,
    });
    await redis.stop();
    expect(await answersPing(TEST_REDIS_URL)).toBe(true);

    await expect(
      ensureRedis({ dataDir: await dataDir(), log, env: { REDIS_URL: deadUrl, PATH }, prefer: "own" }),
    ).rejects.toThrow(/^REDIS_URL is set \(127\.0\.0\.1:\d+\) but that Redis does not answer PING: .*ECONNREFUSED/);
  });

  it("prefer running (tests): uses a Redis answering at the local address, even with redis-server on PATH", async () => {
    const redis = await ensureRedis({
      dataDir: await dataDir(),
      log,
      env: { LOCAL_REDIS_PROBE_URL: TEST_REDIS_URL, PATH },
      prefer: "running",
    });
    expect(redis).toMatchObject({ url: TEST_REDIS_URL, started: false });
  });

  it("prefer own (npm start): starts its own redis-server with AOF even when the local address answers", async () => {
    const dir = await dataDir();
    const own = await ensureRedis({
      dataDir: dir,
      log,
      env: { LOCAL_REDIS_PROBE_URL: TEST_REDIS_URL, PATH },
      prefer: "own",
      preferredPort: 0,
    });
    try {
      expect(own.started).toBe(true);
      expect(own.url).not.toBe(TEST_REDIS_URL);
      await withRedis(own.url, async (redis) => {
        expect(await redis.config("GET", "dir")).toEqual(["dir", join(dir, "redis")]);
        expect(await redis.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
      });
    } finally {
      await own.stop();
    }
    expect(await answersPing(own.url)).toBe(false);
  });

  it("prefer own without redis-server: uses the local Redis, warning that the data is outside the data folder", async () => {
    const dir = await dataDir();
    lines.length = 0;
    const redis = await ensureRedis({
      dataDir: dir,
      log,
      env: { LOCAL_REDIS_PROBE_URL: TEST_REDIS_URL, PATH: await dataDir() },
      prefer: "own",
    });
    expect(redis).toMatchObject({ url: TEST_REDIS_URL, started: false });
    const warning = lines.find((l) => l.event === "redis_outside_data_dir");
    expect(warning).toMatchObject({ level: "warn" });
    expect(warning?.message).toContain(`outside ${dir}: deleting that folder does not reset them`);
    const [, appendonly] = await withRedis(TEST_REDIS_URL, (r) => r.config("GET", "appendonly"));
    expect(warning?.message).toContain(appendonly === "yes" ? "keeps every write" : "a restart of it loses");
  });

  it("starts redis-server with AOF in the data folder when none answers; a rerun reuses its port and data", async () => {
    const dir = await dataDir();
    const busyPort = Number(new URL(TEST_REDIS_URL).port);
    const options = {
      dataDir: dir,
      log,
      env: { LOCAL_REDIS_PROBE_URL: deadUrl, PATH },
      prefer: "own",
      preferredPort: busyPort,
    } as const;
    let first: LocalServer | undefined;
    let second: LocalServer | undefined;
    try {
      first = await ensureRedis(options);
      expect(first.started).toBe(true);
      const port = Number(new URL(first.url).port);
      expect(port).not.toBe(busyPort); // the preferred port was taken: any free one, remembered
      expect(await readFile(join(dir, "redis", "port"), "utf8")).toBe(`${port}\n`);
      await withRedis(first.url, async (redis) => {
        expect(await redis.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
        expect(await redis.config("GET", "appendfsync")).toEqual(["appendfsync", "always"]);
        expect(await redis.config("GET", "dir")).toEqual(["dir", join(dir, "redis")]);
        await redis.set("acknowledged", "order-1");
      });

      await first.stop();
      expect(await answersPing(first.url)).toBe(false);

      second = await ensureRedis(options);
      expect(second).toMatchObject({ url: first.url, started: true });
      expect(await withRedis(second.url, (redis) => redis.get("acknowledged"))).toBe("order-1");

      // A caller that died left it running: the next call with the same folder adopts it, and can stop it.
      events.length = 0;
      const adopted = await ensureRedis(options);
      expect(adopted).toMatchObject({ url: first.url, started: true });
      expect(events).toContain("redis_adopted");
      await adopted.stop();
      expect(await answersPing(first.url)).toBe(false);
    } finally {
      await first?.stop();
      await second?.stop();
    }
  });

  // A Redis stopped with SIGSTOP, or hung: the connection is accepted and nothing ever comes back.
  it(
    "gives up on a REDIS_URL that accepts connections but never answers, naming it and the timeout",
    { timeout: 20_000 },
    async () => {
      const silent = await startSilentServer();
      try {
        const started = performance.now();
        await expect(
          ensureRedis({ dataDir: await dataDir(), log, env: { REDIS_URL: silent.url("redis"), PATH }, prefer: "own" }),
        ).rejects.toThrow(
          `REDIS_URL is set (127.0.0.1:${silent.port}) but that Redis does not answer PING: the Redis at 127.0.0.1:${silent.port} accepted the connection but did not answer within 5000 ms`,
        );
        expect(performance.now() - started).toBeLessThan(10_000);
      } finally {
        await silent.close();
      }
    },
  );

  it(
    "stops, rather than start a second server in the data folder, when its own port never answers",
    { timeout: 20_000 },
    async () => {
      const silent = await startSilentServer();
      const dir = await dataDir();
      // The port this folder's redis-server had, now held by one that does not answer: it is neither adopted nor
      // passed over for another port, where a second redis-server would write to the same AOF.
      await mkdir(join(dir, "redis"));
      await writeFile(join(dir, "redis", "port"), `${silent.port}\n`);
      try {
        await expect(
          ensureRedis({ dataDir: dir, log, env: { LOCAL_REDIS_PROBE_URL: deadUrl, PATH }, prefer: "own" }),
        ).rejects.toThrow(
          `the Redis at 127.0.0.1:${silent.port} accepted the connection but did not answer within 5000 ms`,
        );
        expect(await readFile(join(dir, "redis", "port"), "utf8")).toBe(`${silent.port}\n`);
      } finally {
        await silent.close();
      }
    },
  );

  it("says how to install Redis when none answers and redis-server is not on PATH", async () => {
    const emptyBin = await dataDir();
    const failure = ensureRedis({
      dataDir: await dataDir(),
      log,
      env: { LOCAL_REDIS_PROBE_URL: deadUrl, PATH: emptyBin },
      prefer: "own",
    });
    await expect(failure).rejects.toThrow("redis-server is not on PATH");
    await expect(failure).rejects.toThrow("Debian/Ubuntu: sudo apt-get install redis-server");
    await expect(failure).rejects.toThrow("macOS:         brew install redis");
    await expect(failure).rejects.toThrow("Or set REDIS_URL");
  });
});

describe("choosePort", () => {
  it("with `only`: that port while it is free, an error while it is taken, never another one", async () => {
    const home = await mkdtemp(join(tmpdir(), "choose-port-test-"));
    const port = await freePort();
    try {
      expect(await choosePort(home, undefined, 0, port)).toBe(port);
      expect((await readFile(join(home, "port"), "utf8")).trim()).toBe(String(port));
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve));
      try {
        await expect(choosePort(home, port, 0, port)).rejects.toThrow(`port ${port} is taken`);
        expect(await choosePort(home, port, 0)).not.toBe(port); // without `only`, any free one
      } finally {
        await new Promise((resolve) => taken.close(resolve));
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });
});
