/**
 * Test support for crash tests that run the real processes: a child Node process (engine, worker) whose JSON log
 * lines are collected and can be waited for, a private `redis-server` child on a free port, and a seeded PRNG.
 * Used only by tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
export { seededRandom as prng } from "./seeded-random.ts";

/** The repository root: processes run from it, as `npm run engine` would. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export type LogLine = Record<string, unknown> & { event?: string };

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Parsed JSON lines from stdout, in order. */
  readonly lines: LogLine[];
  /** Everything else it printed (stderr, non-JSON stdout): shown when a wait fails. */
  readonly other: string[];
  /** Resolves with the exit code (or the signal) once the process has ended. */
  readonly exited: Promise<number | NodeJS.Signals>;
  readonly alive: () => boolean;
  /** Waits for a log line with this event (and matching `where`, if given). */
  waitFor(event: string, timeoutMs?: number, where?: (line: LogLine) => boolean): Promise<LogLine>;
  /** Sends the signal and waits until the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export function spawnChild(name: string, command: string, args: readonly string[], env: Record<string, string>): Child {
  const proc = spawn(command, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const lines: LogLine[] = [];
  const other: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let exit: number | NodeJS.Signals | undefined;
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    proc.once("exit", (code, signal) => {
      exit = code ?? signal ?? -1;
      resolve(exit);
      notify();
    });
  });
  const onText = (stream: "stdout" | "stderr") => {
    let partial = "";
    return (chunk: Buffer) => {
      partial += chunk.toString("utf8");
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const raw of parts) {
        if (raw.trim() === "") continue;
        if (stream === "stdout" && raw.startsWith("{")) {
          try {
            lines.push(JSON.parse(raw) as LogLine);
            continue;
          } catch {
            // not a log line: kept below
          }
        }
        other.push(raw);
      }
      notify();
    };
  };
  proc.stdout.on("data", onText("stdout"));
  proc.stderr.on("data", onText("stderr"));
  const alive = () => exit === undefined;

  const waitFor = (event: string, timeoutMs = 20_000, where: (line: LogLine) => boolean = () => true) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = lines.find((l) => l.event === event && where(l));
        if (found !== undefined) return done(() => resolve(found));
        if (!alive()) return done(() => reject(new Error(`${name} exited (${String(exit)}) before logging ${event}\n${tail()}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`${name}: no ${event} within ${timeoutMs} ms\n${tail()}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      check();
    });

  const tail = () => [...lines.slice(-15).map((l) => JSON.stringify(l)), ...other.slice(-15)].join("\n");

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (alive()) proc.kill(signal);
    return exited;
  };
  return { name, proc, lines, other, exited, alive, waitFor, stop };
}

/** A Node process running a TypeScript entry the way the npm scripts do. */
export function spawnNode(name: string, entry: string, env: Record<string, string>, nodeFlags: readonly string[] = []): Child {
  return spawnChild(name, process.execPath, [...nodeFlags, "--import", "tsx", entry], env);
}

/** A TCP port that was free a moment ago (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A private redis-server child, persisting to `dir` with the given extra arguments; resolves once it answers PING. */
export async function startRedisServer(port: number, dir: string, extra: readonly string[]): Promise<Child> {
  const child = spawnChild(`redis-server:${port}`, "redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...extra], {});
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
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
      if (Date.now() - start > 10_000) throw new Error(`redis-server on ${port} did not come up: ${child.other.join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.disconnect();
  }
  return child;
}


export async function until<T>(probe: () => Promise<T | undefined | null>, timeoutMs: number, what: string, pollMs = 25): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
