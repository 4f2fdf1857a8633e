import { afterEach, describe, expect, it, vi } from "vitest";
import { ConfigError } from "./config.ts";
import { createLogger, logFormat, logLevel, prettyLogLine, throttled, type Fields, type Level } from "./log.ts";

function capture(component = "engine", options: { level?: Level; base?: Fields } = {}) {
  const raw: string[] = [];
  const log = createLogger(component, { ...options, sink: (line) => raw.push(line) });
  const lines = () => raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { log, raw, lines };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("JSON lines", () => {
  it("are one JSON object per line with time, level name, component, event and the fields", () => {
    const { log, raw, lines } = capture("engine", { base: { holder: "h:1" } });
    const before = Date.now();
    log.info("replay_done", { entries: 5, ms: 12.5, lastId: "1-0", ok: true, none: null });
    expect(raw).toHaveLength(1);
    expect(raw[0]).not.toContain("\n");
    const [line] = lines();
    expect(line).toEqual({
      time: expect.any(String) as unknown,
      level: "info",
      component: "engine",
      holder: "h:1",
      event: "replay_done",
      entries: 5,
      ms: 12.5,
      lastId: "1-0",
      ok: true,
      none: null,
    });
    expect(line!.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(String(line!.time))).toBeGreaterThanOrEqual(before - 1);
  });

  it("name every level by its label", () => {
    const { log, lines } = capture("api", { level: "debug" });
    log.debug("a");
    log.info("b");
    log.warn("c");
    log.error("d");
    expect(lines().map((l) => [l.level, l.event])).toEqual([
      ["debug", "a"],
      ["info", "b"],
      ["warn", "c"],
      ["error", "d"],
    ]);
  });

  it("write an event without fields as just the event", () => {
    const { log, lines } = capture("api");
    log.info("listening");
    expect(Object.keys(lines()[0]!).sort()).toEqual(["component", "event", "level", "time"]);
  });

  it("keep an error's message and stack, wherever it sits in the fields", () => {
    const { log, lines } = capture("api");
    const error = new Error("redis went away");
    log.error("backend_unavailable", { error, cause: { attempts: [new TypeError("first")] } });
    const [line] = lines();
    expect(line!.error).toEqual({ message: "redis went away", stack: error.stack });
    expect(String((line!.error as { stack: string }).stack)).toContain("log.test.ts");
    expect(line!.cause).toEqual({
      attempts: [{ message: "first", stack: expect.stringContaining("TypeError: first") as unknown }],
    });
  });

  it("write bigints as strings, at any depth, exactly", () => {
    const { log, lines } = capture("engine");
    log.info("snapshot_written", { micros: 12345678901234567890n, nested: { list: [1n, -2n] } });
    const [line] = lines();
    expect(line!.micros).toBe("12345678901234567890");
    expect(line!.nested).toEqual({ list: ["1", "-2"] });
  });

  it("leave the caller's fields as they were", () => {
    const { log } = capture("engine");
    const fields = { error: new Error("x"), n: 1n, inner: { n: 2n } };
    log.warn("e", fields);
    expect(fields.error).toBeInstanceOf(Error);
    expect(fields.n).toBe(1n);
    expect(fields.inner.n).toBe(2n);
  });

  it("survive a field that refers to itself", () => {
    const { log, lines } = capture("engine");
    const loop: Record<string, unknown> = { name: "loop" };
    loop.self = loop;
    log.info("odd", { loop });
    expect(lines()[0]!.loop).toMatchObject({ name: "loop", self: "[Circular]" });
  });
});

describe("child loggers", () => {
  it("add their fields to every line, after the component and base, before the call's fields", () => {
    const { log, lines } = capture("engine", { base: { holder: "h:1" } });
    const child = log.child({ role: "snapshotter" }).child({ run: 2 });
    child.info("snapshot_written", { bytes: 10 });
    log.info("parent_line");
    const [first, second] = lines();
    expect(first).toMatchObject({
      component: "engine",
      holder: "h:1",
      role: "snapshotter",
      run: 2,
      event: "snapshot_written",
      bytes: 10,
    });
    expect(second).not.toHaveProperty("role");
    expect(second).not.toHaveProperty("run");
  });

  it("let a call's field override a child's of the same name when read back", () => {
    const { log, lines } = capture("engine");
    log.child({ role: "a" }).info("x", { role: "b" });
    expect(lines()[0]!.role).toBe("b");
  });

  it("write a field once when a call repeats a bound field with the same value", () => {
    const { log, raw, lines } = capture("engine", { base: { holder: "h:1" } });
    log.info("lease_released", { holder: "h:1" });
    log.child({ role: "a" }).info("x", { role: "a", component: "engine", n: 1 });
    expect(raw[0]!.match(/"holder"/g)).toHaveLength(1);
    expect(raw[1]!.match(/"role"/g)).toHaveLength(1);
    expect(raw[1]!.match(/"component"/g)).toHaveLength(1);
    expect(lines()[1]).toMatchObject({ component: "engine", role: "a", n: 1, event: "x" });
  });

  it("keep their parent's level", () => {
    const { log, lines } = capture("engine", { level: "warn" });
    log.child({ role: "a" }).info("hidden");
    log.child({ role: "a" }).warn("shown");
    expect(lines().map((l) => l.event)).toEqual(["shown"]);
  });
});

describe("levels", () => {
  it("drop lines below the logger's level", () => {
    const { log, lines } = capture("api", { level: "warn" });
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    expect(lines().map((l) => l.event)).toEqual(["w", "e"]);
  });

  it("default to info", () => {
    vi.stubEnv("LOG_LEVEL", "");
    const { log, lines } = capture("api");
    log.debug("d");
    log.info("i");
    expect(lines().map((l) => l.event)).toEqual(["i"]);
  });

  it("come from LOG_LEVEL when the code sets none", () => {
    vi.stubEnv("LOG_LEVEL", "debug");
    const debug = capture("api");
    debug.log.debug("d");
    expect(debug.lines().map((l) => l.event)).toEqual(["d"]);
    vi.stubEnv("LOG_LEVEL", "error");
    const quiet = capture("api");
    quiet.log.warn("w");
    quiet.log.error("e");
    expect(quiet.lines().map((l) => l.event)).toEqual(["e"]);
  });

  it("set in the code win over LOG_LEVEL", () => {
    vi.stubEnv("LOG_LEVEL", "error");
    const { log, lines } = capture("api", { level: "info" });
    log.info("i");
    expect(lines().map((l) => l.event)).toEqual(["i"]);
  });
});

describe("LOG_LEVEL and LOG_FORMAT", () => {
  it("accept the level names, trimmed", () => {
    for (const level of ["debug", "info", "warn", "error"]) expect(logLevel({ LOG_LEVEL: ` ${level} ` })).toBe(level);
    expect(logLevel({})).toBe("info");
  });

  it("refuse anything else, naming the variable, the choices and what they got", () => {
    for (const bad of ["verbose", "INFO", "30", "warning"]) {
      expect(() => logLevel({ LOG_LEVEL: bad })).toThrow(ConfigError);
      expect(() => logLevel({ LOG_LEVEL: bad })).toThrow(
        `LOG_LEVEL must be one of debug, info, warn, error, got "${bad}"`,
      );
    }
  });

  it("stop createLogger on a bad LOG_LEVEL, before anything is logged", () => {
    vi.stubEnv("LOG_LEVEL", "loud");
    const raw: string[] = [];
    expect(() => createLogger("api", { sink: (l) => raw.push(l) })).toThrow(
      'LOG_LEVEL must be one of debug, info, warn, error, got "loud"',
    );
    expect(raw).toEqual([]);
  });

  it("pick pretty for a terminal and JSON otherwise, unless LOG_FORMAT says", () => {
    expect(logFormat({}, true)).toBe("pretty");
    expect(logFormat({}, false)).toBe("json");
    expect(logFormat({ LOG_FORMAT: "json" }, true)).toBe("json");
    expect(logFormat({ LOG_FORMAT: "pretty" }, false)).toBe("pretty");
    expect(() => logFormat({ LOG_FORMAT: "text" }, true)).toThrow('LOG_FORMAT must be one of json, pretty, got "text"');
  });
});

describe("prettyLogLine", () => {
  const json = (fields: Record<string, unknown>) =>
    JSON.stringify({ level: "info", time: "2026-12-05T15:40:01.123Z", component: "engine", ...fields });

  it("prints one line with the time, level, component, event and the other fields", () => {
    const pretty = prettyLogLine(false);
    const line = pretty(json({ holder: "h:1", event: "replay_done", entries: 5, lastId: "7-0" }));
    expect(line).not.toContain("\n");
    expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.123\] INFO: engine replay_done \{.*\}$/);
    expect(line).toContain('"holder":"h:1"');
    expect(line).toContain('"entries":5');
    expect(line).toContain('"lastId":"7-0"');
    expect(line).not.toContain('"component"');
    expect(line).not.toContain('"event"');
  });

  it("shows fields named like pino's own (pid, name, hostname) among the others, with their names", () => {
    const pretty = prettyLogLine(false);
    const line = pretty(
      json({ component: "start", event: "component_started", child: "api", pid: 42, name: "x.sql", hostname: "vm" }),
    );
    expect(line).toMatch(
      /\] INFO: start {2}component_started \{"child":"api","pid":42,"name":"x.sql","hostname":"vm"\}$/,
    );
  });

  it("shows each level and pads the component so events line up", () => {
    const pretty = prettyLogLine(false);
    expect(pretty(json({ level: "warn", component: "api", event: "slow" }))).toMatch(/ WARN: api    slow$/);
    expect(pretty(json({ level: "error", component: "worker", event: "x" }))).toMatch(/ ERROR: worker x$/);
    expect(pretty(json({ level: "debug", component: "poller", event: "x" }))).toMatch(/ DEBUG: poller x$/);
  });

  it("shows the process in the component's place where one is named", () => {
    const pretty = prettyLogLine(false);
    expect(pretty(json({ event: "takeover" }), "engine-2")).toMatch(/ INFO: engine-2 takeover$/);
    expect(pretty(json({ event: "takeover" }))).toMatch(/ INFO: engine takeover$/);
  });

  it("takes a parsed line as well as text", () => {
    const pretty = prettyLogLine(false);
    const parsed = JSON.parse(json({ event: "listening", port: 3300 })) as Record<string, unknown>;
    expect(pretty(parsed)).toBe(pretty(json({ event: "listening", port: 3300 })));
  });

  it("puts an error's message on the line and its stack below", () => {
    const pretty = prettyLogLine(false);
    const stack = "Error: redis went away\n    at connect (redis.ts:1:1)";
    const text = pretty(
      json({ level: "error", event: "backend_unavailable", error: { message: "redis went away", stack } }),
    );
    const [first, ...rest] = text.split("\n");
    expect(first).toMatch(/ ERROR: engine backend_unavailable: redis went away/);
    expect(rest.join("\n")).toContain("at connect (redis.ts:1:1)");
  });

  it("colours only when asked", () => {
    const line = json({ event: "x" });
    expect(prettyLogLine(false)(line)).not.toContain("\u001b[");
    expect(prettyLogLine(true)(line)).toContain("\u001b[");
  });

  it("passes anything that is not a JSON log line through", () => {
    expect(prettyLogLine(false)("api: configuration error: PORT is taken")).toBe(
      "api: configuration error: PORT is taken",
    );
  });
});

describe("throttled", () => {
  it("lets an event through once per period and counts what it held back", () => {
    const { log, lines } = capture("poller");
    let now = 0;
    const warn = throttled(log, 1_000, () => now);
    warn("warn", "frame_dropped", { market: "SOL" });
    now = 10;
    warn("warn", "frame_dropped", { market: "SOL" });
    warn("warn", "frame_dropped", { market: "SOL" });
    now = 1_000;
    warn("warn", "frame_dropped", { market: "SOL" });
    expect(lines().map((l) => [l.event, l.level, l.suppressed])).toEqual([
      ["frame_dropped", "warn", undefined],
      ["frame_dropped", "warn", 2],
    ]);
  });
});
