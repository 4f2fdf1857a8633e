/**
 * Runs the components (platform/components.ts) as child processes, as production runs them as separate services:
 * each one's JSON log lines go to this process's stdout and to `<logDir>/<name>.log`; a component that exits on
 * its own is restarted after a backoff (1 s, doubling to 30 s, back to 1 s after a minute of uptime) and recovers
 * by itself (the engine from snapshot + log, the worker by claiming what was pending). `stop` stops them in
 * reverse order with SIGTERM (the engine takes its final snapshot last) and SIGKILLs whatever hangs.
 *
 * Each child gets an IPC channel it does not use for messages: when this process dies, even by SIGKILL, the
 * channel closes and the children stop themselves (platform/config.ts, onStopRequest). Log lines name the child
 * `child` (the supervisor's own lines carry `component: "start"`).
 *
 * Children always log JSON, at info or below, whatever the environment says: this process reads their ready
 * events. It applies LOG_LEVEL itself to what it relays, and LOG_FORMAT to its stdout only (logRelay): the files
 * stay JSON lines.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nodeArgs, type Component } from "./components.ts";
import { LEVELS, logFormat, logLevel, parseLogLine, prettyLogLine, type Level, type Logger } from "./log.ts";

export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const STOP_BUDGET_MS = 30_000;

/** Where a child's output goes besides its file: the line, and its JSON parsed when it is a JSON log line. */
export type Relay = (line: string, parsed?: Record<string, unknown>) => void;

/**
 * Relays lines to a stream (this process's stdout): as they are for LOG_FORMAT=json, else one readable line
 * each, coloured when the stream is a terminal. LOG_FORMAT unset: pretty for a terminal, JSON otherwise.
 */
export function logRelay(
  stream: { write(text: string): unknown; isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>>,
): Relay {
  const terminal = stream.isTTY === true;
  if (logFormat(env, terminal) === "json") return (line) => void stream.write(`${line}\n`);
  const pretty = prettyLogLine(terminal && !env.NO_COLOR);
  return (line, parsed) => void stream.write(`${pretty(parsed ?? line)}\n`);
}

interface Running {
  readonly component: Component;
  child: ChildProcess | undefined;
  readonly file: WriteStream;
  restarts: number;
  startedAtMs: number;
  backoffMs: number;
  /** Resolves when the component first logs its ready event (in whichever run); rejects if it cannot start. */
  ready: Promise<Record<string, unknown>>;
  markReady: (line: Record<string, unknown>) => void;
  failStart: (error: Error) => void;
  everReady: boolean;
}

export class Supervisor {
  private readonly running: Running[] = [];
  private stopping = false;

  constructor(
    private readonly components: readonly Component[],
    private readonly options: { env: NodeJS.ProcessEnv; log: Logger; logDir: string; out?: Relay },
  ) {
    mkdirSync(options.logDir, { recursive: true });
    this.minLevel = LEVELS.indexOf(logLevel(options.env));
    this.out = options.out ?? logRelay(process.stdout, options.env);
  }

  /** LOG_LEVEL's place in LEVELS: lines below it are not relayed. */
  private readonly minLevel: number;
  private readonly out: Relay;

  /**
   * Starts every component in order, each once the one before is ready; resolves with their ready lines. Rejects
   * when a component exits with a configuration error (exit code 2) before it was ever ready: restarting it
   * cannot help. Other early exits (a database still starting) are retried with the backoff.
   */
  async start(): Promise<Record<string, Record<string, unknown>>> {
    const readyLines: Record<string, Record<string, unknown>> = {};
    for (const component of this.components) {
      if (this.stopping) break;
      const entry = this.track(component);
      this.spawn(entry);
      readyLines[component.name] = await entry.ready;
    }
    return readyLines;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const entry of [...this.running].reverse()) {
      const child = entry.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) continue;
      // "close", not "exit": its last output is read and written to its log file before the file is ended.
      const exited = new Promise((resolve) => child.once("close", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => {
        this.options.log.warn("component_kill", { child: entry.component.name, afterMs: STOP_BUDGET_MS });
        child.kill("SIGKILL");
      }, STOP_BUDGET_MS);
      await exited;
      clearTimeout(timer);
    }
    await Promise.all(this.running.map((e) => new Promise((resolve) => e.file.end(resolve))));
  }

  private track(component: Component): Running {
    const entry = {
      component,
      child: undefined,
      restarts: 0,
      startedAtMs: 0,
      backoffMs: 1_000,
      everReady: false,
      file: createWriteStream(join(this.options.logDir, `${component.name}.log`), { flags: "a" }),
    } as unknown as Running;
    entry.ready = new Promise((resolve, reject) => {
      entry.markReady = (line) => {
        entry.everReady = true;
        resolve(line);
      };
      entry.failStart = reject;
    });
    entry.ready.catch(() => undefined); // handled by start(); never an unhandled rejection
    this.running.push(entry);
    return entry;
  }

  private spawn(entry: Running): void {
    if (this.stopping) return; // a start-up still in flight must not add a process that stop() has passed over
    const { log } = this.options;
    // detached: its own process group, so a Ctrl-C (SIGINT to the terminal's group) reaches only the supervisor,
    // which then stops the components one by one, in order; a signal to all at once would race that order.
    const childLevel: Level = this.minLevel === 0 ? "debug" : "info"; // its ready event is an info line
    const child = spawn(process.execPath, nodeArgs(entry.component), {
      cwd: REPO_ROOT,
      env: { ...this.options.env, LOG_FORMAT: "json", LOG_LEVEL: childLevel },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    entry.child = child;
    entry.startedAtMs = Date.now();
    const name = entry.component.name;
    log.info("component_started", { child: name, pid: child.pid, restarts: entry.restarts });
    this.pipeLines(entry, child.stdout!, true);
    this.pipeLines(entry, child.stderr!, false);
    child.once("error", (err) =>
      log.error("component_spawn_failed", { child: entry.component.name, error: err.message }),
    );
    child.once("exit", (code, signal) => {
      if (this.stopping) {
        log.info("component_stopped", { child: name, code, signal });
        return;
      }
      if (code === 2 && !entry.everReady) {
        log.error("component_config_error", { child: name });
        entry.failStart(new Error(`${name} stopped with a configuration error (its log above says which)`));
        return;
      }
      const upMs = Date.now() - entry.startedAtMs;
      if (upMs > 60_000) entry.backoffMs = 1_000;
      log.warn("component_exited", { child: name, code, signal, upMs, restartInMs: entry.backoffMs });
      const delay = entry.backoffMs;
      entry.backoffMs = Math.min(entry.backoffMs * 2, 30_000);
      entry.restarts++;
      setTimeout(() => {
        if (!this.stopping) this.spawn(entry);
      }, delay);
    });
  }

  private belowLevel(level: unknown): boolean {
    const rank = LEVELS.indexOf(level as Level);
    return rank !== -1 && rank < this.minLevel;
  }

  private pipeLines(entry: Running, stream: NodeJS.ReadableStream, json: boolean): void {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      partial += chunk;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") continue;
        const parsed = json && line.startsWith("{") ? parseLogLine(line) : undefined;
        if (parsed?.event === entry.component.readyEvent) entry.markReady(parsed);
        if (parsed !== undefined && this.belowLevel(parsed.level)) continue;
        if (!entry.file.writableEnded) entry.file.write(`${line}\n`);
        this.out(line, parsed);
      }
    });
  }
}
