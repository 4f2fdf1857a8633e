/**
 * Test support for tests and benchmarks that run the real processes: a child process whose stdout JSON log lines
 * are collected and can be waited for, the system's components started as `npm start` starts them, a private
 * `redis-server` on a free port, a server that never answers, and polling. Used only by tests and benchmarks.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { COMPONENTS, componentNamed, nodeArgs, replicasOf, type Component } from "../components.ts";
import { metricsPortVariable, replicaMetricsPortVariable } from "../metrics.ts";

/** The repository root: processes run from it, as `npm run engine` would. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export type LogLine = Record<string, unknown> & { event?: string };

/** How a process ended, as Node reports it: an exit code, or the signal that ended it (the other is null). */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * Configuration a child gets from the test or not at all. Tests inherit the developer's shell (and global-setup's
 * REDIS_URL): a leaked DATABASE_URL or KEY_PREFIX would point a crash test at someone's data.
 */
const NOT_INHERITED = [
  "REDIS_URL",
  "DATABASE_URL",
  "KEY_PREFIX",
  "SNAPSHOT_EVERY_MS",
  "SNAPSHOT_SAVE_TIMEOUT_MS",
  "ENGINE_LEASE_TTL_MS",
  "ENGINE_STATS_EVERY_MS",
  "INITIAL_BALANCE_USD",
  "METRICS_HOST",
  ...COMPONENTS.flatMap(replicasOf).map(replicaMetricsPortVariable),
  // A child logs JSON lines at info, which the tests wait for: a developer's LOG_FORMAT=pretty or LOG_LEVEL=warn
  // would hide them.
  "LOG_FORMAT",
  "LOG_LEVEL",
];

/** A child process and everything it has printed so far. */
export class Child {
  /** Parsed JSON lines from stdout, in order. */
  readonly lines: LogLine[] = [];
  /** Everything else it printed (stderr, non-JSON stdout). */
  readonly other: string[] = [];
  /** Every line of both streams as it came, tagged with the name and stream: for failure reports. */
  readonly raw: string[] = [];
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly proc: ChildProcessByStdio<null, Readable, Readable>,
  ) {
    this.exited = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
        this.notify();
      });
    });
    this.collect(proc.stdout, "out");
    this.collect(proc.stderr, "err");
  }

  alive(): boolean {
    return this.exit === undefined;
  }

  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }

  /**
   * Resolves with the first line, already logged or still to come, with this event (or matching this predicate);
   * rejects, with the last lines printed, if the process exits first or on timeout.
   */
  waitFor(
    match: string | ((line: LogLine) => boolean),
    timeoutMs = 20_000,
    what = typeof match === "string" ? match : "a matching line",
  ): Promise<LogLine> {
    const matches = typeof match === "string" ? (l: LogLine) => l.event === match : match;
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.find(matches);
        if (found !== undefined) return done(() => resolve(found));
        const exit = this.exit;
        if (exit !== undefined)
          return done(() =>
            reject(this.failure(`exited (${String(exit.code ?? exit.signal)}) before logging ${what}`)),
          );
      };
      const timer = setTimeout(() => done(() => reject(this.failure(`no ${what} within ${timeoutMs} ms`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends the signal, unless the process has already ended, and waits until it is gone. */
  stop(signal: NodeJS.Signals = "SIGTERM"): Promise<Exit> {
    if (this.alive()) this.proc.kill(signal);
    return this.exited;
  }

  private failure(what: string): Error {
    return new Error(`${this.name}: ${what}\n${this.raw.slice(-15).join("\n")}`);
  }

  private collect(stream: Readable, tag: "out" | "err"): void {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        if (line.trim() === "") continue;
        this.raw.push(`[${this.name} ${tag}] ${line}`);
        const parsed = tag === "out" && line.startsWith("{") ? parseLogLine(line) : undefined;
        if (parsed === undefined) this.other.push(line);
        else this.lines.push(parsed);
      }
      this.notify();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function parseLogLine(line: string): LogLine | undefined {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
}

/** Runs `command` from the repository root with the test's `env` over the inherited one (less NOT_INHERITED). */
export function spawnChild(name: string, command: string, args: readonly string[], env: Record<string, string>): Child {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  for (const key of NOT_INHERITED) delete inherited[key];
  return new Child(
    name,
    spawn(command, args, { cwd: REPO_ROOT, env: { ...inherited, ...env }, stdio: ["ignore", "pipe", "pipe"] }),
  );
}

/**
 * One of the system's processes, with the entry and Node flags `npm start` uses (platform/components.ts), so a test
 * runs what production runs; `nodeFlags` adds to them (a bigger heap, a CPU profile) and wins over them. `name`
 * tells apart several.
 * Its metrics go on a free port (logged as metrics_listening) unless `env` sets one: tests run many at once.
 */
export function spawnComponent(
  component: Component["name"],
  env: Record<string, string>,
  options: { name?: string; nodeFlags?: readonly string[] } = {},
): Child {
  const own = nodeArgs(componentNamed(component));
  // After the component's own flags, so that one set by both (a bigger heap for a benchmark) is the test's: the later
  // wins.
  const args = [...own.slice(0, -1), ...(options.nodeFlags ?? []), own.at(-1)!];
  return spawnChild(options.name ?? component, process.execPath, args, {
    [metricsPortVariable(component)]: "0",
    ...env,
  });
}

/** A TCP port that was free a moment ago (the kernel picks it). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * A TCP server on a free port that accepts connections and never answers: what a Redis or Postgres stopped with
 * SIGSTOP looks like to a client (the kernel still completes the handshake).
 */
export async function startSilentServer(): Promise<{
  port: number;
  url(scheme: string): string;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * `count` TCP ports free a moment ago, all different: each is held until the kernel has picked them all, since a port
 * just released may be picked again (two processes of one test given the same port, one fails to listen).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolve);
      });
    }
    return servers.map((server) => (server.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** A private redis-server child, persisting to `dir` with the given extra arguments; resolves once it answers PING. */
export async function startRedisServer(port: number, dir: string, extra: readonly string[]): Promise<Child> {
  const child = spawnChild(
    `redis-server:${port}`,
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...extra],
    {},
  );
  const probe = new Redis({
    port,
    host: "127.0.0.1",
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on("error", () => undefined);
  try {
    const start = Date.now();
    for (;;) {
      if (!child.alive()) throw new Error(`redis-server exited: ${child.other.join("\n")}`);
      try {
        if (probe.status !== "ready") await probe.connect();
        // While it loads the AOF it answers LOADING: wait until it really serves commands.
        if ((await probe.ping()) === "PONG") break;
      } catch {
        probe.disconnect();
      }
      if (Date.now() - start > 10_000)
        throw new Error(`redis-server on ${port} did not come up: ${child.other.join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.disconnect();
  }
  return child;
}

/** Polls `probe` until it returns a value (not undefined or null). */
export async function until<T>(
  probe: () => Promise<T | undefined | null>,
  timeoutMs: number,
  what: string,
  pollMs = 25,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * A redis-server of one test's own on a free port, keeping nothing on disk, with `extra` arguments: for what must not
 * run on the shared test Redis, which every test file uses at once (SCRIPT FLUSH empties a whole server's script
 * cache; a Redis made to refuse writes).
 */
export async function startScratchRedis(
  name: string,
  extra: readonly string[] = [],
): Promise<{ port: number; url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  const port = await freePort();
  const server = await startRedisServer(port, dir, ["--save", "", "--appendonly", "no", ...extra]);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      await server.stop("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
