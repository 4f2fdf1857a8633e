/**
 * Structured logs through pino: one JSON object per line on stdout, with time (ISO), level (its name), component
 * and event, plus ids and durations as fields. Operators and the tests read the system through these lines, so
 * events are stable names. Writes are synchronous, so a process that crashes or exits right after logging (the
 * engine does on a broken invariant) loses no line.
 *
 * LOG_LEVEL (debug | info | warn | error, default info) filters; LOG_FORMAT (json | pretty, default pretty when
 * stdout is a terminal, else json) chooses between the JSON lines and one readable line per entry.
 */
import { writeSync } from "node:fs";
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
  const base = jsonSafe({ component, ...options.base });
  const root = pino(
    {
      level: options.level ?? logLevel(process.env),
      base,
      messageKey: "event",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }), log: jsonSafe },
    },
    destination,
  );
  return wrap(root, base);
}

/** `bound`: the fields pino already writes on each line (base and child fields). */
function wrap(p: Pino, bound: Fields): Logger {
  const keys = Object.keys(bound);
  // A call repeating a bound field with the same value (the engine's `holder`) would write the key twice.
  const own = (fields: Fields | undefined): Fields | undefined => {
    if (fields === undefined) return fields;
    let copy: Fields | undefined;
    for (const key of keys) {
      if (key in fields && fields[key] === bound[key]) delete (copy ??= { ...fields })[key];
    }
    return copy ?? fields;
  };
  // Below the level: a function that does nothing, not even look at the fields.
  const method = (level: Level) => {
    if (!p.isLevelEnabled(level)) return () => undefined;
    const write = p[level].bind(p);
    return (event: string, fields?: Fields) => write(own(fields), event);
  };
  return {
    debug: method("debug"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
    child: (fields) => {
      const safe = jsonSafe(own(fields)!);
      return wrap(p.child(safe), { ...bound, ...safe });
    },
  };
}

let stdoutDestination: DestinationStream | undefined;

/** This process's (or thread's) stdout, written synchronously; one per process, whatever the number of loggers. */
function stdout(): DestinationStream {
  if (stdoutDestination !== undefined) return stdoutDestination;
  // isatty, not process.stdout.isTTY: that getter would set up Node's own asynchronous stdout stream.
  const terminal = isatty(1);
  const fd = syncWriter(1);
  if (logFormat(process.env, terminal) === "json") return (stdoutDestination = fd);
  const pretty = prettyLogLine(terminal && !process.env.NO_COLOR);
  return (stdoutDestination = { write: (line: string) => fd.write(`${pretty(line)}\n`) });
}

/**
 * This process's stdout for text that is not its own log line (npm start's banner): written as the log lines are, in
 * order with them, and dropped once the reader is gone (`npm start | tee`, then Ctrl-C), where process.stdout would
 * end the process with an unhandled EPIPE in the middle of its stop. Like the log lines, it waits for a reader that
 * is behind; the children's lines, many more, do not (supervisor.ts, logRelay).
 */
export function stdoutText(): { write(text: string): void; isTTY: boolean } {
  const fd = syncWriter(1);
  return { write: (text) => fd.write(text), isTTY: isatty(1) };
}

/**
 * Writes each line to `fd` before returning. Once anything in the process has touched process.stdout, fd 1 is
 * non-blocking: a full pipe (its reader behind) answers EAGAIN, and this waits a millisecond and writes the rest,
 * where pino.destination's sync mode sleeps 100 ms, a stall of the event loop each time. A line that cannot be
 * written at all (EPIPE: the reader is gone) is dropped: logging must not throw into the code that logs.
 */
export function syncWriter(fd: number): DestinationStream {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  return {
    write(line: string) {
      let rest: Buffer | undefined;
      for (;;) {
        try {
          if (rest === undefined) {
            const written = writeSync(fd, line);
            if (written === Buffer.byteLength(line)) return;
            rest = Buffer.from(line).subarray(written);
          } else {
            rest = rest.subarray(writeSync(fd, rest));
            if (rest.length === 0) return;
          }
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN") return;
          rest ??= Buffer.from(line);
          Atomics.wait(pause, 0, 0, 1);
        }
      }
    },
  };
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

/** Each process in its own colour, so the `npm start` terminal reads by process at a glance. */
const COMPONENT_COLOURS: Record<string, "magenta" | "yellow" | "blue" | "green" | "cyan" | "white"> = {
  engine: "magenta",
  worker: "yellow",
  poller: "blue",
  api: "green",
  stream: "cyan",
};

/** What a pretty line shows in its own places; every other field follows as compact JSON. */
const LINE_KEYS = new Set(["level", "time", "component", "event"]);

/**
 * A formatter from a JSON log line (text or parsed) to one readable line, without its newline: local time,
 * level, component, event and the other fields as compact JSON; an error's stack follows on indented lines.
 * Anything that is not a JSON log line comes back as it is. `child` names the process the line came from where a
 * component runs several (`engine-1`, `engine-2`): shown in the component's place, in its colour.
 */
export function prettyLogLine(colors: boolean): (line: string | Fields, child?: string) => string {
  const format = prettyFactory({
    colorize: colors,
    messageKey: "event",
    translateTime: "SYS:HH:MM:ss.l",
    singleLine: true,
    ignore: "component,process,fields",
    messageFormat: (log, messageKey, _label, { colors: c }) => {
      const component = typeof log.component === "string" ? log.component : "";
      const label = typeof log.process === "string" ? log.process : component;
      const event = typeof log[messageKey] === "string" ? log[messageKey] : "";
      const error = log.error as { message?: unknown } | undefined;
      const message = typeof error?.message === "string" ? `: ${error.message}` : "";
      const fields = typeof log.fields === "string" ? ` ${c.gray(log.fields)}` : "";
      const paint = COMPONENT_COLOURS[component] ?? "white";
      return `${c.bold(c[paint](label.padEnd(6)))} ${event}${message}${fields}`;
    },
  });
  return (line, child) => {
    const log = typeof line === "string" ? parseLogLine(line) : line;
    if (log === undefined) return line as string;
    // pino-pretty gives fields such as pid and name places of their own, nameless: only ours reach it.
    const shown: Fields = {};
    const rest: Fields = {};
    for (const [key, value] of Object.entries(log)) {
      if (LINE_KEYS.has(key) || (key === "error" && typeof (value as { stack?: unknown })?.stack === "string")) {
        shown[key] = value;
      } else rest[key] = value;
    }
    if (Object.keys(rest).length > 0) shown.fields = JSON.stringify(rest);
    if (child !== undefined) shown.process = child;
    const text = format(shown);
    return text.endsWith("\n") ? text.slice(0, -1) : text;
  };
}

/** A JSON log line's fields; undefined for anything that is not one (printed and kept as it is). */
export function parseLogLine(line: string): Fields | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const parsed: unknown = JSON.parse(line);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) ? (parsed as Fields) : undefined;
  } catch {
    return undefined;
  }
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
