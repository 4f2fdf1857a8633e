/**
 * Test support for end-to-end tests: the real engine process (`engine/main.ts`, as `npm run engine` starts it)
 * as a child process, its stdout JSON lines captured and parsed, so a test can wait for a log event, kill it with
 * any signal and read everything it said afterwards. Used only by tests.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
export { seededRandom } from "../../platform/testing/seeded-random.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export type LogLine = Record<string, unknown> & { event?: string };

export interface EngineEnv {
  readonly REDIS_URL: string;
  readonly DATABASE_URL: string;
  readonly KEY_PREFIX: string;
  readonly SNAPSHOT_EVERY_MS: string;
  readonly ENGINE_LEASE_TTL_MS: string;
  readonly ENGINE_STATS_EVERY_MS?: string;
}

/** Variables the engine reads that a test must not inherit from the shell it runs in. */
const ENGINE_VARS = ["REDIS_URL", "DATABASE_URL", "KEY_PREFIX", "SNAPSHOT_EVERY_MS", "ENGINE_LEASE_TTL_MS", "ENGINE_STATS_EVERY_MS", "INITIAL_BALANCE_USD"];

export class EngineProcess {
  readonly child: ChildProcess;
  /** Parsed stdout lines, in order. */
  readonly lines: LogLine[] = [];
  /** Every raw line of stdout and stderr, prefixed with the stream, for failure reports. */
  readonly raw: string[] = [];
  /** Exit code, or the signal name, once the process has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private ended = false;
  private readonly waiters = new Set<() => void>();

  /** `options` lets a benchmark add Node flags (a bigger heap) or start another process's main the same way. */
  constructor(readonly name: string, env: EngineEnv | Record<string, string>, options: { nodeFlags?: string[]; script?: string } = {}) {
    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const key of ENGINE_VARS) delete base[key];
    const flags = options.nodeFlags ?? ["--max-semi-space-size=64"];
    this.child = spawn(process.execPath, [...flags, "--import", "tsx", options.script ?? "engine/main.ts"], {
      cwd: REPO_ROOT,
      env: { ...base, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.ended = true;
        this.notify();
        resolve({ code, signal });
      });
    });
    this.collect(this.child.stdout!, "out", true);
    this.collect(this.child.stderr!, "err", false);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return !this.ended && this.child.exitCode === null && this.child.signalCode === null;
  }

  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }

  /** Resolves with the first line (already logged or still to come) that matches; rejects on exit or timeout. */
  waitFor(match: (line: LogLine) => boolean, timeoutMs: number, what = "log line"): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.find(match);
        if (found !== undefined) return finish(() => resolve(found));
        if (this.ended) return finish(() => reject(new Error(`${this.name} exited before logging ${what}`)));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}`))), timeoutMs);
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        then();
      };
      this.waiters.add(check);
      check();
    });
  }

  waitForEvent(event: string, timeoutMs: number): Promise<LogLine> {
    return this.waitFor((l) => l.event === event, timeoutMs, `"${event}"`);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  private collect(stream: NodeJS.ReadableStream, tag: string, parse: boolean): void {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.length === 0) continue;
        this.raw.push(`[${this.name} ${tag}] ${line}`);
        if (parse) {
          try {
            this.lines.push(JSON.parse(line) as LogLine);
          } catch {
            this.lines.push({ event: "unparsed_line", line });
          }
        }
      }
      this.notify();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

