/**
 * What local-redis.ts and local-postgres.ts share: their options, the handle they return, the default local
 * addresses, and the helpers for ports, pid files and stopping processes.
 *
 * Servers started there run in their own session (daemonized): Ctrl-C in the terminal reaches only the caller, which
 * stops them last with `stop()`. A server left running by a caller that died (kill -9) is found again by the next
 * call with the same data folder and adopted. `started` is true when the server is this data folder's own and
 * `stop()` shuts it down cleanly; false when it belongs to someone else and `stop()` does nothing.
 */
import { access, constants, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import type { Logger } from "./log.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export interface InfraOptions {
  /** The data folder; each server keeps its files in a folder of its own inside it. */
  readonly dataDir: string;
  readonly log: Logger;
  readonly env: Env;
  /**
   * `own` (`npm start`): this data folder's own servers, so all local state is in one folder; `running` (tests): a
   * server already answering at the usual local address first (local-redis.ts, local-postgres.ts say which).
   */
  readonly prefer: "own" | "running";
  /** Port tried first when a server is started here; 0 takes any free port. */
  readonly preferredPort?: number;
  /** Start only on this port, or fail: a restart, whose clients were given this address. */
  readonly onlyPort?: number;
  /** Persist to disk (the default). Tests turn it off for speed: no AOF, no Postgres fsync. */
  readonly durable?: boolean;
}

export interface LocalServer {
  readonly url: string;
  /** True when the server is this data folder's own and `stop()` shuts it down; false when it is someone else's. */
  readonly started: boolean;
  /** Whether its process still runs (always true for someone else's: not ours to watch). */
  alive(): Promise<boolean>;
  stop(): Promise<void>;
}

export const DEFAULT_LOCAL_REDIS_URL = "redis://127.0.0.1:6379";
export const DEFAULT_LOCAL_POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export function foreign(url: string): LocalServer {
  return { url, started: false, alive: () => Promise.resolve(true), stop: () => Promise.resolve() };
}

/** host:port of a URL, for logs and messages (never the password). */
export function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "default port"}`;
  } catch {
    return "an unparsable URL";
  }
}

/**
 * The remembered port if it is still free, else `preferred` if free, else any free port; remembered in `home/port`.
 * With `only`, that port or an error.
 */
export async function choosePort(
  home: string,
  remembered: number | undefined,
  preferred: number,
  only?: number,
): Promise<number> {
  let port: number | undefined;
  for (const candidate of only === undefined ? [remembered, preferred] : [only]) {
    if (candidate !== undefined && candidate !== 0 && (await listenOn(candidate)) !== undefined) {
      port = candidate;
      break;
    }
  }
  if (port === undefined && only !== undefined) throw new Error(`port ${only} is taken`);
  port ??= await listenOn(0);
  if (port === undefined) throw new Error("no free TCP port on 127.0.0.1");
  await writeFile(join(home, "port"), `${port}\n`);
  return port;
}

export async function readPort(home: string): Promise<number | undefined> {
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

export async function onPath(command: string, path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? "").split(delimiter).filter((d) => d !== "")) {
    const file = join(dir, command);
    if (
      await access(file, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return file;
  }
  return undefined;
}

/** SIGTERM, then wait until the process is gone (SIGKILL after 60 s). */
export async function stopPid(pid: number, name: string, log: Logger): Promise<void> {
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
export async function running(pid: number): Promise<boolean> {
  if (!signal(pid, 0)) return false;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/**
 * Waits, at most `ms`, while `pid` is a zombie: a process that died and that its parent (init, for a daemon) has not
 * reaped yet. The system still lists the pid meanwhile.
 */
export async function reaped(pid: number, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (signal(pid, 0) && !(await running(pid)) && performance.now() < until) await sleep(25);
}

export async function pidFileAlive(file: string): Promise<boolean> {
  const pid = Number((await readFile(file, "utf8").catch(() => "")).trim());
  // No pid file yet: the daemon is still starting.
  return !Number.isInteger(pid) || pid <= 0 || running(pid);
}

export function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

export const tail = async (file: string) =>
  (await readFile(file, "utf8").catch(() => "(no log)")).split("\n").slice(-15).join("\n");
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
