/**
 * Finds or starts the Redis a local run needs (`npm start`, and `npm test` through platform/testing/global-setup.ts).
 *
 * ensureRedis, first that applies:
 * 1. `REDIS_URL` set: that server, which must answer PING (else an error says so); logged with its persistence.
 * 2. `prefer: "running"` (tests): a Redis answering at `LOCAL_REDIS_PROBE_URL` (default redis://127.0.0.1:6379).
 * 3. This data folder's own redis-server, still running (adopted) or started: `redis-server` on `PATH`, in
 *    `<dataDir>/redis`, on 127.0.0.1, port `preferredPort` (6380) if free, else a free one; the port is remembered
 *    in `<dataDir>/redis/port`, so a rerun finds the same server and data.
 * 4. `prefer: "own"` (`npm start`) without redis-server: a Redis answering at `LOCAL_REDIS_PROBE_URL`, with a warning
 *    that the data then lives outside the data folder, and whether that Redis persists it.
 * 5. Else an error that says how to install Redis or set REDIS_URL.
 *
 * 6380 rather than 6379: the machine's Redis, and what `npm test` looks for, stay at 6379.
 *
 * Each look at a Redis gives up after 5 s (withRedis): one stopped with SIGSTOP still accepts connections. Such a
 * Redis counts as one that does not answer, except at this data folder's remembered port: there it stops
 * ensureRedis with an error, since it may be this folder's own server, stopped, and a second one would share its AOF.
 *
 * A redis-server started here runs daemonized, and one left running by a caller that died is adopted; what `started`
 * and `stop()` mean is at the top of local-servers.ts.
 */
import { execFile } from "node:child_process";
import { mkdir, realpath, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { Logger } from "./log.ts";
import {
  DEFAULT_LOCAL_REDIS_URL,
  choosePort,
  foreign,
  onPath,
  once,
  pidFileAlive,
  readPort,
  running,
  sleep,
  stopPid,
  tail,
  where,
  type InfraOptions,
  type LocalServer,
} from "./local-servers.ts";

const run = promisify(execFile);

export async function ensureRedis(options: InfraOptions): Promise<LocalServer> {
  const { env, log } = options;
  const configured = env.REDIS_URL?.trim();
  if (configured) {
    const problem = await redisProblem(configured);
    if (problem !== undefined)
      throw new Error(
        `REDIS_URL is set (${where(configured)}) but that Redis does not answer PING: ${problem.replace(/\.$/, "")}. Fix REDIS_URL, or unset it to use or start a local Redis.`,
      );
    log.info("redis_configured", { at: where(configured), persistence: (await redisPersistence(configured)).text });
    return foreign(configured);
  }
  const home = join(resolve(options.dataDir), "redis");
  await mkdir(home, { recursive: true });
  const local = env.LOCAL_REDIS_PROBE_URL?.trim() || DEFAULT_LOCAL_REDIS_URL;
  if (options.prefer === "running" && (await redisProblem(local)) === undefined) {
    const pid = await redisPidIfOurs(local, home);
    log.info(pid === undefined ? "redis_found_local" : "redis_adopted", { at: where(local), pid });
    return pid === undefined ? foreign(local) : ownRedis(local, home, log, pid);
  }
  const remembered = await readPort(home);
  if (remembered !== undefined) {
    // This folder's server, left running by a caller that died: adopt it (it may still be loading its AOF).
    const url = `redis://127.0.0.1:${remembered}`;
    const pid = await redisPidIfOurs(url, home);
    if (pid !== undefined) {
      await waitForRedis(url, () => running(pid), home);
      log.info("redis_adopted", { at: where(url), pid });
      return ownRedis(url, home, log, pid);
    }
  }

  const bin = await onPath("redis-server", env.PATH);
  if (bin === undefined && options.prefer === "own" && (await redisProblem(local)) === undefined) {
    const persistence = await redisPersistence(local);
    log.warn("redis_outside_data_dir", {
      at: where(local),
      message: `redis-server is not on PATH, so the log and read models are kept in the Redis at ${where(local)}, outside ${resolve(options.dataDir)}: deleting that folder does not reset them, and that Redis ${persistence.text}. Install redis-server to keep them in the data folder, with AOF.`,
    });
    return foreign(local);
  }
  if (bin === undefined) {
    throw new Error(
      [
        `Redis is needed and none was found: REDIS_URL is not set, nothing answers at ${where(local)}, and redis-server is not on PATH.`,
        "Install Redis and run again (a redis-server with AOF is then started in the data folder):",
        "  Debian/Ubuntu: sudo apt-get install redis-server",
        "  macOS:         brew install redis",
        "Or set REDIS_URL to a Redis you run, e.g. REDIS_URL=redis://127.0.0.1:6379",
      ].join("\n"),
    );
  }
  const port = await choosePort(home, remembered, options.preferredPort ?? 6380, options.onlyPort);
  const durable = options.durable ?? true;
  const pidFile = join(home, "redis.pid");
  await rm(pidFile, { force: true });
  const started = performance.now();
  await run(
    bin,
    [
      "--daemonize",
      "yes",
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--dir",
      home,
      "--pidfile",
      pidFile,
      "--logfile",
      join(home, "redis.log"),
      "--save",
      "",
      // `always`: a write is on disk before Redis acknowledges it, so an order the API accepted survives even a crash
      // of the machine (docs/operations.md, Durability); `everysec` could lose the last second. Redis fsyncs once per event-loop
      // turn for all the writes of that turn, so the cost is one fsync per batch, not per command.
      ...(durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
    ],
    { env: { PATH: env.PATH ?? "" } },
  );
  const url = `redis://127.0.0.1:${port}`;
  await waitForRedis(url, () => pidFileAlive(pidFile), home);
  const pid = await redisPidIfOurs(url, home);
  if (pid === undefined) throw new Error(`the Redis on port ${port} is not the one started in ${home}`);
  log.info("redis_started", { port, dir: home, pid, appendonly: durable, ms: Math.round(performance.now() - started) });
  return ownRedis(url, home, log, pid);
}

/** Until it answers PING (with AOF it answers LOADING until the whole file is replayed); fails if it dies first. */
async function waitForRedis(url: string, alive: () => boolean | Promise<boolean>, home: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (let problem = await redisProblem(url); problem !== undefined; problem = await redisProblem(url)) {
    if (Date.now() > deadline || !(await alive())) {
      throw new Error(
        `redis-server at ${where(url)} did not come up (${problem}); its log, ${join(home, "redis.log")}, ends:\n${await tail(join(home, "redis.log"))}`,
      );
    }
    await sleep(50);
  }
}

/**
 * Whether a Redis keeps what it acknowledged across its own restart, from its configuration, in words for a log
 * line; `durable` is undefined when the server does not report it (managed Redis, CONFIG disabled).
 */
export async function redisPersistence(url: string): Promise<{ durable: boolean | undefined; text: string }> {
  const config = await withRedis(url, async (redis) => {
    const read = async (name: string) => (await redis.config("GET", name))[1];
    return { appendonly: await read("appendonly"), fsync: await read("appendfsync"), save: await read("save") };
  }).catch(() => undefined);
  if (config?.appendonly === undefined) return { durable: undefined, text: "does not report how it persists data" };
  if (config.appendonly === "yes")
    return { durable: true, text: `keeps every write in its append-only file (appendfsync ${config.fsync ?? "?"})` };
  return {
    durable: false,
    text: config.save
      ? `runs without AOF (only snapshots, save "${config.save}"): a restart of it loses acknowledged orders`
      : "runs without any persistence: a restart of it loses every acknowledged order",
  };
}

/** Undefined when the server answers PING with PONG; else what went wrong (refused, LOADING, auth, …). */
export async function redisProblem(url: string): Promise<string | undefined> {
  return withRedis(url, async (redis) => {
    await redis.ping();
    return undefined;
  }).catch((err: Error) => err.message);
}

/**
 * The server's pid when its data folder is `home` (it is this data folder's own server), else undefined; a server
 * that accepts the connection but does not answer is neither (RedisNoAnswerError): it may be this folder's own,
 * stopped, and a second redis-server started beside it would write to the same AOF.
 */
async function redisPidIfOurs(url: string, home: string): Promise<number | undefined> {
  const real = await realpath(home).catch(() => home);
  return withRedis(url, async (redis) => {
    const [, dir] = (await redis.config("GET", "dir")) as [string, string];
    if (dir !== real) return undefined;
    const pid = /process_id:(\d+)/.exec(await redis.info("server"))?.[1];
    return pid === undefined ? undefined : Number(pid);
  }).catch((err: unknown) => {
    if (err instanceof RedisNoAnswerError) throw err;
    return undefined;
  });
}

/** How long a probe waits for its connection and all its answers. */
const PROBE_TIMEOUT_MS = 5_000;

/** A Redis did not answer a probe in time: stopped (SIGSTOP), hung, or an address that drops packets. */
export class RedisNoAnswerError extends Error {}

/**
 * Runs `use` on a one-off connection to `url` that does not retry: a probe, not a client to keep. Gives up after
 * PROBE_TIMEOUT_MS (RedisNoAnswerError): a Redis stopped with SIGSTOP still accepts connections (the kernel does), and
 * the connection's setup and every command would then wait for ever.
 */
export async function withRedis<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // connect() itself only says "Connection is closed."; the socket's error says why (ECONNREFUSED, …).
  let cause: Error | undefined;
  redis.on("error", (err: Error) => (cause ??= err));
  const probe = (async () => {
    try {
      await redis.connect();
      return await use(redis);
    } catch (err) {
      throw cause ?? err;
    }
  })();
  // Once it is given up on (the one timeout, for the connection too), its own failure is no news: the connection
  // closed below.
  probe.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const givenUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const how =
        redis.status === "connecting" ? "did not accept a connection" : "accepted the connection but did not answer";
      reject(
        new RedisNoAnswerError(
          `the Redis at ${where(url)} ${how} within ${PROBE_TIMEOUT_MS} ms (is it stopped, or hung?)`,
        ),
      );
    }, PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([probe, givenUp]);
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}

function ownRedis(url: string, home: string, log: Logger, pid: number): LocalServer {
  const stop = once(async () => {
    const stopping = performance.now();
    // Asked of the server itself, so a stale handle never signals a process that merely reuses the pid. One that does
    // not answer cannot say: it is left as it is, and the stops that follow this one still run.
    const pid = await redisPidIfOurs(url, home).catch(() => undefined);
    if (pid === undefined) return;
    // SIGTERM is Redis' clean shutdown: it flushes and fsyncs the AOF, then exits.
    await stopPid(pid, "redis", log);
    log.info("redis_stopped", { at: where(url), pid, ms: Math.round(performance.now() - stopping) });
  });
  return { url, started: true, alive: () => running(pid), stop };
}
