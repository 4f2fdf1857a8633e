/**
 * Structured logs through pino: one JSON object per line on stdout, with time (ISO), level (its name), component
 * and event, plus ids and durations as fields. Operators and the tests read the system through these lines, so
 * events are stable names. Writes are synchronous, so a process that crashes or exits right after logging (the
 * engine does on a broken invariant) loses no line.
 *
 * LOG_LEVEL (debug | info | warn | error, default info) filters; LOG_FORMAT (json | pretty, default pretty when
 * stdout is a terminal, else json) chooses between the JSON lines and one readable line per entry.
 */
import { isatty } from "node:tty";
import { pino, type DestinationStream, type Logger as Pino } from "pino";
import { prettyFactory } from "pino-pretty";
import { oneOf } from "./config.ts";

export const LEVELS = ["debug", "info", "warn", "error"] as const;
export type Level = (typeof LEVELS)[number];
export type Format = "json" | "pretty";
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

/** Receives each JSON line, without its newline, instead of stdout (tests). */
export type Sink = (line: string) => void;

type Env = Readonly<Record<string, string | undefined>>;

/** LOG_LEVEL, validated (a ConfigError naming the variable, the choices and what it got). */
export function logLevel(env: Env): Level {
  return oneOf(env, "LOG_LEVEL", LEVELS, "info");
}

/** LOG_FORMAT, validated; unset: pretty for a terminal, JSON for anything else (a file, a pipe, a log service). */
export function logFormat(env: Env, isTerminal: boolean): Format {
  return oneOf(env, "LOG_FORMAT", ["json", "pretty"] as const, isTerminal ? "pretty" : "json");
}

export function createLogger(component: string, options: { level?: Level; sink?: Sink; base?: Fields } = {}): Logger {
  const destination: DestinationStream =
    options.sink === undefined ? stdout() : { write: (line: string) => options.sink!(line.slice(0, -1)) };
  const root = pino(
    {
      level: options.level ?? logLevel(process.env),
      base: jsonSafe({ component, ...options.base }),
      messageKey: "event",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: jsonSafe },
    },
    destination,
  );
  return wrap(root);
}

function wrap(p: Pino): Logger {
  return {
    debug: (event, fields) => p.debug(fields, event),
    info: (event, fields) => p.info(fields, event),
    warn: (event, fields) => p.warn(fields, event),
    error: (event, fields) => p.error(fields, event),
    child: (fields) => wrap(p.child(jsonSafe(fields))),
  };
}

let stdoutDestination: DestinationStream | undefined;

/** This process's (or thread's) stdout, written synchronously; one per process, whatever the number of loggers. */
function stdout(): DestinationStream {
  if (stdoutDestination !== undefined) return stdoutDestination;
  // isatty, not process.stdout.isTTY: that getter would set up Node's own asynchronous stdout stream.
  const terminal = isatty(1);
  const fd = pino.destination({ dest: 1, sync: true });
  if (logFormat(process.env, terminal) === "json") return (stdoutDestination = fd);
  const pretty = prettyLogLine(terminal);
  return (stdoutDestination = { write: (line: string) => fd.write(`${pretty(line)}\n`) });
}

/**
 * Errors as their message and stack; bigints as strings (JSON has neither). Copies only what it changes: fields
 * without either, nearly every line, pass through as they are.
 */
function jsonSafe(fields: Fields): Fields {
  let copy: Fields | undefined;
  for (const key in fields) {
    const value = fields[key];
    const safe = safeValue(value, 0);
    if (safe !== value) (copy ??= { ...fields })[key] = safe;
  }
  return copy ?? fields;
}

const MAX_DEPTH = 8;

function safeValue(value: unknown, depth: number): unknown {
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Error) return { message: value.message, stack: value.stack };
  if (depth >= MAX_DEPTH) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const safe = safeValue(value[i], depth + 1);
      if (safe !== value[i]) (copy ??= [...(value as unknown[])])[i] = safe;
    }
    return copy ?? value;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value; // Date, Buffer…: their own toJSON
  let copy: Fields | undefined;
  const object = value as Fields;
  for (const key in object) {
    const safe = safeValue(object[key], depth + 1);
    if (safe !== object[key]) (copy ??= { ...object })[key] = safe;
  }
  return copy ?? value;
}

/**
 * A formatter from a JSON log line (text or parsed) to one readable line, without its newline: local time,
 * level, component, event and the other fields as compact JSON; an error's stack follows on indented lines.
 * Anything that is not a JSON line comes back as it is.
 */
export function prettyLogLine(colors: boolean): (line: string | Fields) => string {
  const format = prettyFactory({
    colorize: colors,
    messageKey: "event",
    translateTime: "SYS:HH:MM:ss.l",
    singleLine: true,
    ignore: "component",
    messageFormat: (log, messageKey, _label, { colors: c }) => {
      const error = log.error as { message?: unknown } | undefined;
      const message = typeof error?.message === "string" ? `: ${error.message}` : "";
      const component = typeof log.component === "string" ? log.component : "";
      return `${c.bold(component.padEnd(6))} ${String(log[messageKey])}${message}`;
    },
  });
  return (line) => {
    const text = format(line);
    return text.endsWith("\n") ? text.slice(0, -1) : text;
  };
}

/**
 * Lets a repeated event through at most once per `everyMs`, counting what it held back, so a flood of bad
 * frames is visible without drowning the log.
 */
export function throttled(log: Logger, everyMs: number, now: () => number = Date.now) {
  let lastMs = -Infinity;
  let suppressed = 0;
  return (level: Exclude<Level, "debug">, event: string, fields?: Fields) => {
    const t = now();
    if (t - lastMs < everyMs) {
      suppressed++;
      return;
    }
    log[level](event, suppressed > 0 ? { ...fields, suppressed } : fields);
    lastMs = t;
    suppressed = 0;
  };
}
