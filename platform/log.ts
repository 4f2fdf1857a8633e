/**
 * Structured logs: one JSON object per line on stdout, with time, level, component and event, plus ids and
 * durations as fields. Operators read the engine through these lines, so events are stable names.
 */

export type Level = "debug" | "info" | "warn" | "error";
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export type Sink = (line: string) => void;

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(component: string, options: { level?: Level; sink?: Sink; base?: Fields } = {}): Logger {
  const min = ORDER[options.level ?? "info"];
  const sink = options.sink ?? ((line: string) => process.stdout.write(`${line}\n`));
  const base = { component, ...options.base };
  const write = (level: Level, event: string, fields?: Fields) => {
    if (ORDER[level] < min) return;
    sink(JSON.stringify({ time: new Date().toISOString(), level, ...base, event, ...fields }, jsonSafe));
  };
  return {
    debug: (event, fields) => write("debug", event, fields),
    info: (event, fields) => write("info", event, fields),
    warn: (event, fields) => write("warn", event, fields),
    error: (event, fields) => write("error", event, fields),
    child: (fields) => createLogger(component, { ...options, base: { ...options.base, ...fields } }),
  };
}

/** Errors as their message and stack; bigints as strings. */
function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { message: value.message, stack: value.stack };
  if (typeof value === "bigint") return value.toString();
  return value;
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
