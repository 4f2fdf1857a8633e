/**
 * Environment configuration, read once by each process's main and validated there: a bad value stops the
 * process at start with a message naming the variable, never later. Every variable is listed in .env.example.
 */
import type { Logger } from "./log.ts";

export class ConfigError extends Error {}

type Env = Readonly<Record<string, string | undefined>>;

export function text(env: Env, name: string, fallback?: string): string {
  const value = env[name]?.trim();
  if (value !== undefined && value !== "") return value;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${name} is required`);
}

/**
 * KEY_PREFIX, the prefix of every Redis key of a deployment (contract/names.ts keyspace): at most 64 printable ASCII
 * characters, no spaces, since it becomes part of every key name and of the log lines that name keys. Every process
 * that reads it reads it here, so a prefix one refuses every one refuses, each at its own start (exit 2), rather
 * than the poller alone once the others are up.
 */
export function keyPrefix(env: Env): string {
  const prefix = text(env, "KEY_PREFIX", "");
  if (!/^[\x21-\x7e]{0,64}$/.test(prefix)) {
    throw new ConfigError(
      `KEY_PREFIX must be at most 64 printable ASCII characters without spaces, got ${JSON.stringify(prefix)}`,
    );
  }
  return prefix;
}

export function wholeNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

export function oneOf<T extends string>(env: Env, name: string, choices: readonly T[], fallback: T): T {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  if (!(choices as readonly string[]).includes(raw))
    throw new ConfigError(`${name} must be one of ${choices.join(", ")}, got "${raw}"`);
  return raw as T;
}

/**
 * A URL of one of `protocols` (`"redis:"`, …). A refused value is echoed whole, its password masked, and one that
 * looks like an address without its scheme (`localhost:6380`, which parses as the scheme `localhost:`) gets the URL it
 * was likely meant to be.
 */
export function url(env: Env, name: string, fallback: string | undefined, protocols: readonly string[]): string {
  const value = text(env, name, fallback);
  const shown = withoutPassword(value);
  const meant = /^\S+$/.test(value) && !value.includes("//") ? ` (did you mean ${protocols[0]}//${shown}?)` : "";
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    throw new ConfigError(`${name} is not a URL: "${shown}"${meant}`);
  }
  if (!protocols.includes(protocol))
    throw new ConfigError(`${name} must use ${protocols.join(" or ")}, got "${shown}"${meant}`);
  return value;
}

/**
 * REDIS_URL, as every process reads it: redis:// or rediss://, this machine's Redis when unset. Upstash's databases
 * take TLS only, and a client without it has its connection reset on every attempt ("The server is TLS enabled but
 * your connection (client) is not … If you are using a Redis URL then it should start with `rediss://`",
 * upstash.com/docs/redis/troubleshooting/econn_reset): a process would reconnect for ever and never be ready, a
 * configuration mistake that would look like an outage. So a redis:// URL naming an Upstash host is refused at start.
 */
export function redisUrl(env: Env): string {
  const value = url(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]);
  const { protocol, hostname } = new URL(value);
  if (protocol === "redis:" && /(^|\.)upstash\.io$/i.test(hostname)) {
    const shown = withoutPassword(value);
    throw new ConfigError(
      `REDIS_URL names an Upstash host, which takes TLS only: use rediss://, got "${shown}" (did you mean ${shown.replace(/^redis:/i, "rediss:")}?)`,
    );
  }
  return value;
}

/** `value` with the password of its `user:password@` part, if any, replaced by `***`. */
function withoutPassword(value: string): string {
  return value.replace(/^([^/@]*\/\/)?([^:/@]*):[^@/]*@/, "$1$2:***@");
}

/**
 * CORS_ORIGINS: the browser origins besides APP_URL's that may call the API (functions/config.ts) and open a
 * stream socket (stream/config.ts). Each is matched as written against the Origin header, which browsers send in
 * one form (the host in lower case, no default port, no user): an entry in another form would never match and its
 * page be refused 403 with nothing said at start, so it is refused here, with the form it was likely meant to be.
 */
export function corsOrigins(env: Env): string[] {
  const origins = (env.CORS_ORIGINS ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const origin of origins) {
    const sent = /^https?:\/\/[^/]+$/.test(origin) ? originOf(origin) : undefined;
    if (sent === undefined)
      throw new ConfigError(`CORS_ORIGINS entries must be origins like https://app.example.com, got "${origin}"`);
    if (sent !== origin)
      throw new ConfigError(
        `CORS_ORIGINS entries must be origins as browsers send them (host in lower case, no default port), got "${origin}" (did you mean ${sent}?)`,
      );
  }
  return origins;
}

/** The origin of `value` as a browser would send it, or undefined when it is not a URL. */
function originOf(value: string): string | undefined {
  try {
    return new URL(value).origin;
  } catch {
    return undefined;
  }
}

/** The names a development server on this machine is reached by, besides APP_URL's own host. */
export const LOOPBACK_NAMES: readonly string[] = ["localhost", "127.0.0.1", "[::1]"];

/**
 * For development only (the API's dev mailbox is on): when APP_URL's host is a loopback name, the origins of APP_URL's
 * scheme and port on every loopback name, APP_URL's own among them; else none. They are all this one server (one
 * port has one listener), which `npm start` and the docs show at localhost and 127.0.0.1 alike: a page of it, the
 * API reference's "Try it out" among them, is its own origin at any of them.
 */
export function loopbackOrigins(appUrl: string): string[] {
  const app = new URL(appUrl);
  if (!LOOPBACK_NAMES.includes(app.hostname)) return [];
  const port = app.port === "" ? "" : `:${app.port}`;
  return LOOPBACK_NAMES.map((name) => `${app.protocol}//${name}${port}`);
}

/**
 * The origins besides APP_URL's and CORS_ORIGINS that the API admits, read from the environment for the stream
 * (stream/config.ts): the API takes loopbackOrigins while its dev mailbox is on (functions/app.ts), which is when
 * RESEND_API_KEY is unset (functions/config.ts, which then refuses NODE_ENV=production and an APP_URL whose host is
 * not a loopback name).
 */
export function developmentOrigins(env: Env, appUrl: string): string[] {
  return env.RESEND_API_KEY?.trim() || env.NODE_ENV === "production" ? [] : loopbackOrigins(appUrl);
}

/** How `onStopRequest` treats what comes after the first stop request. */
export interface StopRequestOptions {
  /**
   * With nobody left to ask twice (an orphan, or a process on its own whose terminal closed), a clean stop that
   * hangs (its Redis gone too, say) ends after this with exit 1 and a `stop_timeout` line; 30 s by default. null:
   * never (npm start, each step of whose stop is bounded).
   */
  stopBudgetMs?: number | null;
  /**
   * A SIGINT or SIGTERM that asks again, later than the first request's repeats: by default the signal's own
   * action, which ends at once a process whose clean stop hangs.
   */
  onSecondRequest?: (signal: NodeJS.Signals) => void;
}

/**
 * Calls `stop` once, on the first stop request: SIGINT, SIGTERM, SIGHUP (its terminal closed), or the supervisor
 * that started this process gone: `npm start` talks to its children over an IPC channel, which closes when it dies,
 * even by SIGKILL, so no component outlives it and keeps ports, the engine lease or the log busy for the next
 * `npm start`.
 *
 * One request often comes as two signals, and the second must not end the stop the first began: npm forwards
 * SIGINT and SIGTERM to the script it runs, which gets the terminal's Ctrl-C as well; a closing terminal's shell
 * passes its SIGHUP on, and the kernel sends one more. So a stop signal within REPEAT_WINDOW_MS of the first request
 * is that request again, and so is any SIGHUP (nobody is there to ask twice). A SIGINT or SIGTERM after that window
 * is a second request (`onSecondRequest`). An orphan, or a process with no supervisor whose terminal closed, ends
 * after `stopBudgetMs` if its clean stop hangs: nobody is left to SIGKILL it.
 */
export function onStopRequest(
  stop: (reason: string) => void,
  { stopBudgetMs = UNATTENDED_STOP_BUDGET_MS, onSecondRequest }: StopRequestOptions = {},
): void {
  let requestedAtMs: number | undefined;
  /** Whether this is the first request (and then stops). */
  const first = (reason: string): boolean => {
    if (requestedAtMs !== undefined) return false;
    requestedAtMs = performance.now();
    stop(reason);
    return true;
  };
  let budgetArmed = false;
  const armBudget = () => {
    if (budgetArmed || stopBudgetMs === null) return;
    budgetArmed = true;
    setTimeout(() => {
      const line = { time: new Date().toISOString(), level: "error", event: "stop_timeout", afterMs: stopBudgetMs };
      process.stderr.write(`${JSON.stringify(line)}\n`);
      process.exit(1);
    }, stopBudgetMs).unref();
  };
  const onStopSignal = (signal: NodeJS.Signals) => {
    if (first(signal) || performance.now() - requestedAtMs! < REPEAT_WINDOW_MS) return;
    if (onSecondRequest !== undefined) return onSecondRequest(signal);
    // The signal's own action: with no listener left, Node gives it back to the system's default, which ends the
    // process by that signal (a shell sees 130 for SIGINT, as for any program stopped by Ctrl-C).
    process.removeListener("SIGINT", onStopSignal);
    process.removeListener("SIGTERM", onStopSignal);
    process.kill(process.pid, signal);
  };
  process.on("SIGINT", onStopSignal);
  process.on("SIGTERM", onStopSignal);
  process.on("SIGHUP", () => {
    first("SIGHUP");
    // Its terminal gone, nobody can press Ctrl-C again; under a supervisor, that one SIGKILLs what hangs.
    if (process.channel === undefined) armBudget();
  });
  if (process.channel !== undefined) {
    process.once("disconnect", () => {
      first("supervisor_gone");
      armBudget();
    });
    process.channel.unref(); // the channel alone must not keep a stopped process alive
  }
}

/** How long after a stop request a stop signal is the same request sent again (npm's copy comes within ~1 ms). */
const REPEAT_WINDOW_MS = 1_000;
/** As long as the supervisor waits for a child's clean stop before it SIGKILLs it (supervisor.ts). */
const UNATTENDED_STOP_BUDGET_MS = 30_000;

/**
 * What `work` resolves with, or undefined once `ms` have passed or `stop` comes, whichever is first: a start step a
 * process waits for only so long (the worker's durability check, the stream's first Postgres try). When `work`
 * rejects first, the result rejects with its error at once; a rejection after the result is dropped (nothing waits for
 * it any more, and it must not end the process as an unhandled rejection).
 */
export function settledWithin<T>(work: Promise<T>, ms: number, stop: AbortSignal): Promise<T | undefined> {
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", onStop);
    };
    const onStop = () => {
      finish();
      resolve(undefined);
    };
    // Both outcomes handled from the start, whether or not anything still waits: the result takes on the work's,
    // its rejection reason included, unless it has settled already (a promise settles once).
    const settle = () => {
      finish();
      resolve(work);
    };
    void work.then(settle, settle);
    const timer = setTimeout(onStop, ms);
    if (stop.aborted) return onStop();
    stop.addEventListener("abort", onStop, { once: true });
  });
}

/** An abort signal that fires on the first stop request, logged as `stopping`: how every process stops cleanly. */
export function stopOnSignals(log: Logger, options: StopRequestOptions = {}): AbortSignal {
  const stop = new AbortController();
  onStopRequest((signal) => {
    log.info("stopping", { signal });
    stop.abort();
  }, options);
  return stop.signal;
}

/**
 * npm start's stop requests: `stop` aborts on the first (logged as `stopping`), `force` on a second Ctrl-C or SIGTERM
 * later than the first's repeats (logged as `stop_forced`): its components are then SIGKILLed, and the rest of its
 * stop (its Postgres, its Redis, the pid file) still runs, each step of it bounded, rather than the process ending
 * with them left running. Bounded as they are, those steps need no stop budget after a hangup either.
 */
export function stopOrForceOnSignals(log: Logger): { stop: AbortSignal; force: AbortSignal } {
  const force = new AbortController();
  const stop = stopOnSignals(log, {
    stopBudgetMs: null,
    onSecondRequest: (signal) => {
      if (force.signal.aborted) return;
      log.warn("stop_forced", { signal });
      force.abort();
    },
  });
  return { stop, force: force.signal };
}

/** One step of a process's stop: what it stops, for the log line when it fails. */
export interface StopStep {
  readonly name: string;
  readonly run: () => Promise<void>;
}

/**
 * Runs every step, in order, whatever the ones before did: one that fails (Postgres not stopped in time) must not
 * leave the later ones undone (Redis running, the pid file left). Each failure is logged as `stop_step_failed`, with
 * the step's name and the error; resolves with the first failure's error, undefined when all succeeded.
 */
export async function runStopSteps(steps: readonly StopStep[], log: Logger): Promise<{ error: unknown } | undefined> {
  let failed: { error: unknown } | undefined;
  for (const step of steps) {
    try {
      await step.run();
    } catch (error) {
      log.error("stop_step_failed", { step: step.name, error });
      failed ??= { error };
    }
  }
  return failed;
}

/** Runs a process's main: a configuration error prints one clear line and exits 2; anything else is a crash. */
export function runMain(component: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${component}: ${CONFIG_ERROR}${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: "error", component, event: "crash", error: String(err instanceof Error ? err.stack : err) })}\n`,
    );
    process.exit(1);
  });
}

const CONFIG_ERROR = "configuration error: ";

/** The message of a configuration error line as runMain writes it (`worker: configuration error: …`), or undefined. */
export function configErrorMessage(line: string): string | undefined {
  const at = line.indexOf(`: ${CONFIG_ERROR}`);
  return at > 0 && !line.startsWith("{") ? line.slice(at + 2 + CONFIG_ERROR.length) : undefined;
}
