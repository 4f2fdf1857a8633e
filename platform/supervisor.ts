/**
 * Runs each replica of the components (platform/components.ts) as a child process, as production runs them as
 * separate services; the engine's two are `engine-1` and `engine-2`, a leader and a hot standby. Each child's JSON
 * log lines go to this process's stdout and to `<logDir>/<name>.log`, and it gets its metrics port as
 * `<COMPONENT>_METRICS_PORT` (replicaMetricsConfig), with the variable it came from as METRICS_PORT_VARIABLE. A child
 * that exits on its own recovers by itself (the engine from snapshot + log, or its standby takes over; the worker by
 * claiming what was pending) and is restarted:
 * - at once when it had logged its ready event in that run and then served for `stableMs` (10 s): waiting only
 *   leaves a gap (the engine without a standby);
 * - after a backoff when it exited before that, ready or not (1 s, doubling to 30 s for each such exit in a row,
 *   logged as `component_crash_loop` from the second; the count starts over after a run that served `stableMs`):
 *   restarting at once one that dies as it starts would only spin, an engine restoring its snapshot every time.
 * That rule is restart-backoff.ts's, which npm start's own Redis and Postgres follow too (watched-server.ts).
 * `stop` stops them in reverse order with SIGTERM, the replicas of one component together (the engine's leader takes
 * its final snapshot last; its standby stops rather than take over), and SIGKILLs whatever hangs.
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
import { nodeArgs, replicasOf, type Component, type Replica } from "./components.ts";
import { configErrorMessage } from "./config.ts";
import { LEVELS, logFormat, logLevel, parseLogLine, prettyLogLine, type Level, type Logger } from "./log.ts";
import { childMetricsEnv, replicaMetricsConfig } from "./metrics.ts";
import { RestartBackoff } from "./restart-backoff.ts";

export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const STOP_BUDGET_MS = 30_000;

/** Where a child's output goes besides its file: the line, and its JSON parsed when it is a JSON log line. */
/** `child` names the process the line came from where its component runs several (`engine-1`), else undefined. */
export type Relay = (line: string, parsed?: Record<string, unknown>, child?: string) => void;

/** What the relay writes to: process.stdout, or a test's stand-in. */
export interface RelayStream {
  write(text: string): unknown;
  isTTY?: boolean;
  /** What it holds that its reader has not taken yet (a Writable's writableLength); 0 when it does not say. */
  readonly writableLength?: number;
  on?(event: "error", listener: (error: Error) => void): unknown;
}

/** How much relayed output may wait in memory for a reader that has stopped reading (`npm start | less`). */
export const RELAY_BACKLOG_BYTES = 1024 * 1024;

/**
 * Relays lines to a stream (this process's stdout): as they are for LOG_FORMAT=json, else one readable line each,
 * coloured when the stream is a terminal. LOG_FORMAT unset: pretty for a terminal, JSON otherwise.
 *
 * It never blocks: the supervisor must go on reading its children's output (else they block on their own, and the
 * whole stack stops) and handling Ctrl-C. While more than `backlogBytes` wait for a reader that is behind, lines
 * are dropped and counted, and a `stdout_lines_dropped` line says how many once it takes lines again; a reader
 * gone (EPIPE: `npm start | tee`, then Ctrl-C ends tee too) ends the relay, not the supervisor. Every line still
 * reaches its process's file in `logDir`.
 */
export function logRelay(
  stream: RelayStream,
  env: Readonly<Record<string, string | undefined>>,
  { logDir, backlogBytes = RELAY_BACKLOG_BYTES }: { logDir?: string; backlogBytes?: number } = {},
): Relay {
  const terminal = stream.isTTY === true;
  const pretty = logFormat(env, terminal) === "json" ? undefined : prettyLogLine(terminal && !env.NO_COLOR);
  const format = (line: string, parsed?: Record<string, unknown>, child?: string) =>
    pretty === undefined ? line : pretty(parsed ?? line, child);
  let gone = false;
  stream.on?.("error", () => (gone = true));
  let dropped = 0;
  return (line, parsed, child) => {
    if (gone) return;
    if ((stream.writableLength ?? 0) > backlogBytes) {
      dropped++;
      return;
    }
    if (dropped > 0) {
      const note = {
        time: new Date().toISOString(),
        level: "warn",
        component: "start",
        event: "stdout_lines_dropped",
        lines: dropped,
        message: `${dropped} lines not shown here: this output's reader was behind; ${logDir ?? "the log files"} has them all`,
      };
      dropped = 0;
      stream.write(`${format(JSON.stringify(note), note)}\n`);
    }
    stream.write(`${format(line, parsed, child)}\n`);
  };
}

interface Running {
  readonly replica: Replica;
  /** Its `<COMPONENT>_METRICS_PORT` and METRICS_PORT_VARIABLE (childMetricsEnv). */
  readonly metricsEnv: Record<string, string>;
  child: ChildProcess | undefined;
  readonly file: WriteStream;
  restarts: number;
  startedAtMs: number;
  /** When the current run logged its ready event; undefined before. */
  readyAtMs: number | undefined;
  /** The configuration error the current run wrote on stderr, if any: repeated when it stops the start. */
  configError: string | undefined;
  /** Counts its runs in a row that exited before they had served `stableMs`: when to start it again. */
  readonly backoff: RestartBackoff;
  /** Resolves when the child first logs its ready event (in whichever run); rejects if it cannot start. */
  ready: Promise<Record<string, unknown>>;
  markReady: (line: Record<string, unknown>) => void;
  failStart: (error: Error) => void;
  everReady: boolean;
}

export class Supervisor {
  private readonly running: Running[] = [];
  /** Restarts waiting out their backoff: stop() cancels them. */
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private stopping = false;

  constructor(
    private readonly components: readonly Component[],
    private readonly options: {
      env: NodeJS.ProcessEnv;
      log: Logger;
      logDir: string;
      out?: Relay;
      /** How long a run must serve after its ready event to be restarted at once (10 s by default). */
      stableMs?: number;
    },
  ) {
    mkdirSync(options.logDir, { recursive: true });
    this.minLevel = LEVELS.indexOf(logLevel(options.env));
    this.out = options.out ?? logRelay(process.stdout, options.env, { logDir: options.logDir });
  }

  /** LOG_LEVEL's place in LEVELS: lines below it are not relayed. */
  private readonly minLevel: number;
  private readonly out: Relay;

  /**
   * Starts every replica of every component in order, each once the one before is ready; resolves with their ready
   * lines by child name. Rejects when a child exits with a configuration error (exit code 2) before it was ever
   * ready, restarting it cannot help, with the message it wrote, or when its metrics port variable is wrong. Other
   * early exits (a database still starting) are retried with the backoff.
   */
  async start(): Promise<Record<string, Record<string, unknown>>> {
    const readyLines: Record<string, Record<string, unknown>> = {};
    for (const replica of this.components.flatMap(replicasOf)) {
      if (this.stopping) break;
      const entry = this.track(replica);
      this.spawn(entry);
      readyLines[replica.name] = await entry.ready;
    }
    return readyLines;
  }

  /**
   * Stops the children in order, each with SIGTERM, then SIGKILL after STOP_BUDGET_MS; once `force` aborts (a
   * second Ctrl-C), those still stopping and the ones after get SIGKILL at once.
   */
  async stop(force?: AbortSignal): Promise<void> {
    this.stopping = true;
    for (const timer of this.restartTimers) clearTimeout(timer);
    for (const component of [...this.components].reverse()) {
      const replicas = this.running.filter((e) => e.replica.component === component);
      await Promise.all(replicas.map((e) => this.stopChild(e, force)));
    }
    await Promise.all(this.running.map((e) => new Promise((resolve) => e.file.end(resolve))));
  }

  private async stopChild(entry: Running, force: AbortSignal | undefined): Promise<void> {
    const child = entry.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // "close", not "exit": its last output is read and written to its log file before the file is ended.
    const exited = new Promise((resolve) => child.once("close", resolve));
    const kill = () => child.kill("SIGKILL");
    if (force?.aborted) kill();
    else child.kill("SIGTERM");
    force?.addEventListener("abort", kill, { once: true });
    const timer = setTimeout(() => {
      this.options.log.warn("component_kill", { child: entry.replica.name, afterMs: STOP_BUDGET_MS });
      kill();
    }, STOP_BUDGET_MS);
    await exited;
    clearTimeout(timer);
    force?.removeEventListener("abort", kill);
  }

  private track(replica: Replica): Running {
    const entry = {
      replica,
      metricsEnv: childMetricsEnv(replica.component.name, replicaMetricsConfig(this.options.env, replica)),
      child: undefined,
      restarts: 0,
      startedAtMs: 0,
      readyAtMs: undefined,
      configError: undefined,
      backoff: new RestartBackoff(this.options.stableMs),
      everReady: false,
      file: createWriteStream(join(this.options.logDir, `${replica.name}.log`), { flags: "a" }),
    } as unknown as Running;
    entry.ready = new Promise((resolve, reject) => {
      entry.markReady = (line) => {
        entry.everReady = true;
        entry.readyAtMs = Date.now();
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
    const component = entry.replica.component;
    const child = spawn(process.execPath, nodeArgs(component), {
      cwd: REPO_ROOT,
      env: {
        ...this.options.env,
        ...replicaDefaults(entry.replica, this.options.env),
        ...entry.metricsEnv,
        LOG_FORMAT: "json",
        LOG_LEVEL: childLevel,
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      detached: true,
    });
    entry.child = child;
    entry.startedAtMs = Date.now();
    entry.readyAtMs = undefined;
    entry.configError = undefined;
    const name = entry.replica.name;
    log.info("component_started", { child: name, pid: child.pid, restarts: entry.restarts });
    this.pipeLines(entry, child, child.stdout!, true);
    this.pipeLines(entry, child, child.stderr!, false);
    child.once("error", (err) => log.error("component_spawn_failed", { child: name, error: err.message }));
    // "close", not "exit": by then every line it wrote has been read, its ready event too if it logged one just
    // before it died.
    child.once("close", (code, signal) => {
      if (this.stopping) {
        log.info("component_stopped", { child: name, code, signal });
        return;
      }
      if (code === 2 && !entry.everReady) {
        // Repeated in the start's last line: lines of the processes started before may have come since.
        const said = entry.configError;
        log.error("component_config_error", { child: name, error: said });
        entry.failStart(
          new Error(
            said === undefined
              ? `${name} stopped with a configuration error (its log above says which)`
              : `${name} stopped with a configuration error: ${said}`,
          ),
        );
        return;
      }
      const now = Date.now();
      const upMs = now - entry.startedAtMs;
      entry.restarts++;
      const { restartInMs, failures, crashLoop } = entry.backoff.ended(
        entry.readyAtMs === undefined ? undefined : now - entry.readyAtMs,
      );
      log.warn("component_exited", { child: name, code, signal, upMs, restartInMs });
      if (crashLoop) log.warn("component_crash_loop", { child: name, failures, restartInMs });
      if (restartInMs === 0) {
        this.spawn(entry);
        return;
      }
      const timer = setTimeout(() => {
        this.restartTimers.delete(timer);
        this.spawn(entry);
      }, restartInMs);
      this.restartTimers.add(timer);
    });
  }

  private belowLevel(level: unknown): boolean {
    const rank = LEVELS.indexOf(level as Level);
    return rank !== -1 && rank < this.minLevel;
  }

  private pipeLines(entry: Running, child: ChildProcess, stream: NodeJS.ReadableStream, json: boolean): void {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      partial += chunk;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") continue;
        const parsed = json && line.startsWith("{") ? parseLogLine(line) : undefined;
        if (!json && entry.child === child) entry.configError = configErrorMessage(line) ?? entry.configError;
        // Only the current run's: a line the previous run left in the pipe says nothing about this one.
        if (parsed?.event === entry.replica.component.readyEvent && entry.child === child) entry.markReady(parsed);
        if (parsed !== undefined && this.belowLevel(parsed.level)) continue;
        if (!entry.file.writableEnded) entry.file.write(`${line}\n`);
        this.out(line, parsed, entry.replica.component.replicas > 1 ? entry.replica.name : undefined);
      }
    });
  }
}

/** The component's variables for this replica (Component.replicaEnv), but for those the environment sets. */
function replicaDefaults(replica: Replica, env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const defaults = replica.component.replicaEnv?.(replica) ?? {};
  return Object.fromEntries(Object.entries(defaults).filter(([name]) => !env[name]?.trim()));
}
