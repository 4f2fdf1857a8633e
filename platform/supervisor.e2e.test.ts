/**
 * The supervisor's relay of a child's output: the log file gets the JSON lines as written, the terminal one
 * readable line each (JSON when it is not a terminal, or LOG_FORMAT says so); LOG_LEVEL filters both, while the
 * child itself always logs JSON at info, so its ready event still comes through.
 *
 * Its restarts and replicas, with stand-in children that fail, crash or serve as told: a child that dies after it
 * was ready is restarted at once, one that fails before it is ready after a growing backoff (a crash loop, logged);
 * a replicated component's processes each have their own name, log file and metrics port.
 *
 * And npm start's stop (platform/testing/start-fixture.ts): clean with its stdout's reader gone or stalled, on one
 * Ctrl-C sent twice and on a hangup; forced by a second Ctrl-C; no component left behind when it is killed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { componentNamed, type Component } from "./components.ts";
import { createLogger } from "./log.ts";
import { until } from "./testing/processes.ts";
import { backoffMs } from "./restart-backoff.ts";
import { logRelay, Supervisor, type Relay } from "./supervisor.ts";

// The fixture stands in for the API: nodeArgs puts the component's bundle after these flags, as an argument the
// fixture ignores.
const FIXTURE: Component = {
  name: "api",
  entry: "platform/testing/log-fixture.ts",
  nodeFlags: ["--import", "tsx", "platform/testing/log-fixture.ts", "serve", "0"],
  readyEvent: "ready",
  metricsPort: 0,
  replicas: 1,
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs the fixture under a supervisor until ready, stops it; what the terminal and the log file received. */
async function supervise(env: Record<string, string>, terminal: boolean) {
  const logDir = mkdtempSync(join(tmpdir(), "paper-broker-relay-"));
  dirs.push(logDir);
  const written: string[] = [];
  const stream = { isTTY: terminal, write: (text: string) => written.push(text) };
  const fullEnv = { ...process.env, ...env };
  const supervisor = new Supervisor([FIXTURE], {
    env: fullEnv,
    log: createLogger("start", { sink: () => undefined }),
    logDir,
    out: logRelay(stream, fullEnv),
  });
  const ready = await supervisor.start();
  await supervisor.stop();
  const file = readFileSync(join(logDir, "api.log"), "utf8");
  return { ready: ready.api!, terminal: written.join(""), file };
}

const fileEvents = (file: string) =>
  file
    .trim()
    .split("\n")
    .map((line) => (line.startsWith("{") ? (JSON.parse(line) as { event: string }).event : line));

describe("the supervisor's log relay", () => {
  it("writes JSON lines to the file and one readable line each to a terminal", { timeout: 30_000 }, async () => {
    const { ready, terminal, file } = await supervise({ LOG_FORMAT: "", LOG_LEVEL: "" }, true);
    // The child logged JSON (the supervisor read its ready line) at info, whatever this process's stdout is.
    expect(ready).toMatchObject({ event: "ready", component: "fixture", logFormat: "json", logLevel: "info" });
    expect(fileEvents(file)).toEqual(["ready", "slow", "not a JSON line", "stopped"]);
    const plain = terminal.replace(/\u001b\[[0-9;]*m/g, ""); // a terminal gets colours
    expect(terminal).not.toBe(plain);
    expect(plain.split("\n")).toEqual([
      expect.stringMatching(
        /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: fixture ready \{"thread":"main","logFormat":"json","logLevel":"info"\}$/,
      ),
      expect.stringMatching(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: fixture slow \{"thread":"main","ms":1500\}$/),
      "not a JSON line",
      expect.stringMatching(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: fixture stopped \{"thread":"main"\}$/),
      "",
    ]);
  });

  it("relays the JSON lines as they are when the output is not a terminal", { timeout: 30_000 }, async () => {
    const { terminal, file } = await supervise({ LOG_FORMAT: "", LOG_LEVEL: "" }, false);
    expect(terminal).toBe(file);
  });

  it("follows LOG_FORMAT for the terminal only", { timeout: 30_000 }, async () => {
    const json = await supervise({ LOG_FORMAT: "json", LOG_LEVEL: "" }, true);
    expect(json.terminal).toBe(json.file);
    const pretty = await supervise({ LOG_FORMAT: "pretty", LOG_LEVEL: "" }, false);
    expect(pretty.ready.logFormat).toBe("json");
    expect(fileEvents(pretty.file)).toEqual(["ready", "slow", "not a JSON line", "stopped"]);
    expect(pretty.terminal).not.toContain("\u001b["); // readable, but no colours outside a terminal
    expect(pretty.terminal).toMatch(/\] INFO: fixture ready \{/);
  });

  it("applies LOG_LEVEL to what it relays, and still sees the ready line", { timeout: 30_000 }, async () => {
    const warn = await supervise({ LOG_FORMAT: "json", LOG_LEVEL: "warn" }, false);
    expect(warn.ready).toMatchObject({ event: "ready", logLevel: "info" });
    expect(fileEvents(warn.file)).toEqual(["slow", "not a JSON line"]);
    expect(warn.terminal).toBe(warn.file);
    const debug = await supervise({ LOG_FORMAT: "json", LOG_LEVEL: "debug" }, false);
    expect(debug.ready.logLevel).toBe("debug");
    expect(fileEvents(debug.file)).toEqual(["detail", "ready", "slow", "not a JSON line", "stopped"]);
  });
});

/** A stand-in component (platform/testing/supervised-fixture.ts) under the name and replica ports given. */
function standIn(name: Component["name"], metricsPorts: readonly number[]): Component {
  const [metricsPort = 0, ...moreMetricsPorts] = metricsPorts;
  return {
    ...componentNamed(name),
    name,
    entry: "platform/testing/supervised-fixture.ts",
    nodeFlags: ["--import", "tsx", "platform/testing/supervised-fixture.ts"],
    readyEvent: "ready",
    metricsPort,
    replicas: metricsPorts.length,
    moreMetricsPorts,
  };
}

type Line = Record<string, unknown> & { event: string; child?: string; time: string };

/** A supervisor of `components` whose own lines are collected, and whose children's output goes nowhere. */
function supervisorOf(
  components: Component[],
  plan: string,
  options: { stableMs?: number; env?: Record<string, string>; out?: Relay } = {},
) {
  const logDir = mkdtempSync(join(tmpdir(), "paper-broker-restarts-"));
  dirs.push(logDir);
  const lines: Line[] = [];
  const env = {
    ...process.env,
    FIXTURE_PLAN: plan,
    FIXTURE_RUNS: join(logDir, "runs"),
    ENGINE_METRICS_PORT: "",
    ENGINE_2_METRICS_PORT: "",
    LOG_FORMAT: "json",
    LOG_LEVEL: "",
    WORKER_NAME: "",
    ...options.env,
  };
  const supervisor = new Supervisor(components, {
    env,
    log: createLogger("start", { sink: (l) => lines.push(JSON.parse(l) as Line) }),
    logDir,
    out: options.out ?? (() => undefined),
    ...(options.stableMs === undefined ? {} : { stableMs: options.stableMs }),
  });
  const fileLines = (name: string) =>
    existsSync(join(logDir, `${name}.log`))
      ? readFileSync(join(logDir, `${name}.log`), "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as Line)
      : [];
  return { supervisor, lines, fileLines };
}

/** From each exit to the start after it: the restart delay it announced and the one measured. */
function restartGaps(lines: readonly Line[]) {
  const gaps: { restartInMs: number; measuredMs: number }[] = [];
  lines.forEach((line, i) => {
    if (line.event !== "component_exited") return;
    const next = lines.slice(i + 1).find((l) => l.event === "component_started");
    if (next === undefined) return;
    gaps.push({ restartInMs: Number(line.restartInMs), measuredMs: Date.parse(next.time) - Date.parse(line.time) });
  });
  return gaps;
}

describe("the supervisor's restarts", () => {
  it(
    "restarts a child that served at once, and one that fails before it is ready or as it starts after a backoff",
    { timeout: 60_000 },
    async () => {
      // Two failures, a run that serves 1 s and dies, two that die as they get ready, then a run that serves.
      const { supervisor, lines } = supervisorOf([standIn("worker", [0])], "fail,fail,crash-later,crash,crash,serve", {
        stableMs: 500,
      });
      try {
        const first = await supervisor.start();
        expect(first.worker).toMatchObject({ event: "ready", run: 2 });
        await until(
          () => Promise.resolve(lines.filter((l) => l.event === "component_started").length === 6 || undefined),
          30_000,
          "the sixth run",
        );
        const exits = lines.filter((l) => l.event === "component_exited");
        expect(exits.map((l) => [l.child, l.code, l.restartInMs])).toEqual([
          ["worker", 1, backoffMs(1)],
          ["worker", 1, backoffMs(2)],
          ["worker", 1, 0], // it had served stableMs: at once
          ["worker", 1, backoffMs(1)], // ready, but died at once: the count started over after the run that served
          ["worker", 1, backoffMs(2)],
        ]);
        expect(backoffMs(2)).toBeGreaterThan(backoffMs(1));
        // The second exit in a row that had not served is a crash loop, ready or not.
        expect(lines.filter((l) => l.event === "component_crash_loop")).toEqual([
          expect.objectContaining({ level: "warn", child: "worker", failures: 2, restartInMs: backoffMs(2) }),
          expect.objectContaining({ level: "warn", child: "worker", failures: 2, restartInMs: backoffMs(2) }),
        ]);
        const gaps = restartGaps(lines);
        for (const gap of gaps.filter((g) => g.restartInMs > 0)) {
          expect(gap.measuredMs).toBeGreaterThanOrEqual(gap.restartInMs - 5); // timers may round down a little
        }
        // At once: well before the first backoff would have restarted it.
        expect(gaps[2]!.measuredMs).toBeLessThan(backoffMs(1));
      } finally {
        await supervisor.stop();
      }
    },
  );

  it(
    "restarts the worker under the consumer name it had, unless WORKER_NAME names one",
    { timeout: 60_000 },
    async () => {
      for (const [env, name] of [
        [{}, `${hostname()}:worker`],
        [{ WORKER_NAME: "mine" }, "mine"],
      ] as const) {
        const { supervisor, fileLines } = supervisorOf([standIn("worker", [0])], "crash-later,serve", {
          stableMs: 200,
          env: { ...env, FIXTURE_SERVE_MS: "300" },
        });
        try {
          await supervisor.start();
          // The file may end in a line still being written: not parsed until it is whole.
          const readyTwice = () => {
            try {
              return fileLines("worker").filter((l) => l.event === "ready").length === 2 || undefined;
            } catch {
              return undefined;
            }
          };
          await until(() => Promise.resolve(readyTwice()), 30_000, "the restarted worker");
        } finally {
          await supervisor.stop();
        }
        const ready = fileLines("worker").filter((l) => l.event === "ready");
        expect(ready.map((l) => [l.run, l.workerName])).toEqual([
          [0, name],
          [1, name],
        ]);
      }
    },
  );

  it(
    "stops the start when a child exits with a configuration error before it was ready, repeating its message",
    { timeout: 30_000 },
    async () => {
      const message = 'WORKER_CLAIM_IDLE_MS must be a whole number from 100 to 3600000, got "soon"';
      const { supervisor, lines } = supervisorOf([standIn("worker", [0])], "config-error", {
        env: { FIXTURE_CONFIG_ERROR: message },
      });
      try {
        await expect(supervisor.start()).rejects.toThrow(
          new Error(`worker stopped with a configuration error: ${message}`),
        );
      } finally {
        await supervisor.stop();
      }
      expect(lines.filter((l) => l.event === "component_config_error")).toEqual([
        expect.objectContaining({ level: "error", child: "worker", error: message }),
      ]);
      expect(lines.filter((l) => l.event === "component_started")).toHaveLength(1);
    },
  );

  it("backs off up to 30 s, doubling", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 100].map(backoffMs)).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ]);
  });

  it(
    "runs each replica as a child of its own name, log file and metrics port, one after the other",
    { timeout: 60_000 },
    async () => {
      const relayed: string[] = [];
      const out = logRelay({ isTTY: false, write: (text: string) => relayed.push(text) }, { LOG_FORMAT: "pretty" });
      const { supervisor, lines, fileLines } = supervisorOf([standIn("engine", [19141, 19146])], "serve", { out });
      let ready: Record<string, Record<string, unknown>>;
      try {
        ready = await supervisor.start();
      } finally {
        await supervisor.stop();
      }
      expect(Object.keys(ready)).toEqual(["engine-1", "engine-2"]);
      expect(ready["engine-1"]).toMatchObject({ event: "ready", metricsPort: "19141" });
      expect(ready["engine-2"]).toMatchObject({ event: "ready", metricsPort: "19146" });
      for (const [name, port] of [
        ["engine-1", "19141"],
        ["engine-2", "19146"],
      ] as const) {
        expect(fileLines(name).map((l) => [l.event, l.metricsPort])).toEqual([
          ["ready", port],
          ["stopped", undefined],
        ]);
      }
      expect(existsSync(join(dirs.at(-1)!, "engine.log"))).toBe(false);
      // On the terminal, each line names the process it came from.
      expect(relayed.filter((l) => / (ready|stopped) /.test(l)).map((l) => / INFO: (\S+) /.exec(l)?.[1])).toEqual(
        expect.arrayContaining(["engine-1", "engine-2"]),
      );
      expect(relayed.some((l) => / INFO: fixture /.test(l))).toBe(false);
      // The second started once the first was ready.
      const started = lines.filter((l) => l.event === "component_started").map((l) => l.child);
      expect(started).toEqual(["engine-1", "engine-2"]);
      const secondStarted = lines.find((l) => l.event === "component_started" && l.child === "engine-2")!;
      expect(Date.parse(secondStarted.time)).toBeGreaterThanOrEqual(Date.parse(fileLines("engine-1")[0]!.time));
      expect(lines.filter((l) => l.event === "component_stopped").map((l) => l.child)).toEqual(
        expect.arrayContaining(["engine-1", "engine-2"]),
      );
    },
  );

  it(
    "names engine-2's own variable when its metrics port is taken, and moves it when that variable is set",
    { timeout: 30_000 },
    async () => {
      const taken = createNetServer();
      await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
      const takenPort = (taken.address() as AddressInfo).port;
      try {
        const { supervisor } = supervisorOf([standIn("engine", [0, takenPort])], "metrics");
        try {
          await expect(supervisor.start()).rejects.toThrow(
            `engine-2 stopped with a configuration error: cannot serve metrics on 127.0.0.1:${takenPort} (EADDRINUSE): ` +
              "set ENGINE_2_METRICS_PORT to a free port, 0 for any, or off",
          );
        } finally {
          await supervisor.stop();
        }
        // Following the message moves engine-2.
        const moved = supervisorOf([standIn("engine", [0, takenPort])], "metrics", {
          env: { ENGINE_2_METRICS_PORT: "0" },
        });
        try {
          expect(Object.keys(await moved.supervisor.start())).toEqual(["engine-1", "engine-2"]);
        } finally {
          await moved.supervisor.stop();
        }
      } finally {
        taken.close();
      }
    },
  );
});

describe("stopping npm start", () => {
  const started: { child: ChildProcess; standInPid: number }[] = [];
  // A test that fails must not leave the reduced npm start, or its stand-in, running.
  afterEach(() => {
    for (const { child, standInPid } of started.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (standInPid > 0 && running(standInPid)) process.kill(standInPid, "SIGKILL"); // 0: the whole group
    }
  });

  /**
   * The reduced npm start, once it says it is ready: its stdout (the JSON lines), stderr, its exit, and the pid of
   * its stand-in component, which logs `lines` long lines every 5 ms and takes `stopMs` to stop.
   */
  async function startFixture({ lines = 0, stopMs = 0 } = {}) {
    const logDir = mkdtempSync(join(tmpdir(), "paper-broker-stop-"));
    dirs.push(logDir);
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "platform/testing/start-fixture.ts", logDir, String(lines), String(stopMs)],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LOG_FORMAT: "", LOG_LEVEL: "" } },
    );
    const output = { stdout: "", stderr: "" };
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output.stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const entry = { child, output, exited, logDir, standInPid: 0 };
    started.push(entry);
    await until(
      () =>
        Promise.resolve(
          output.stderr.includes("ready\n") || child.exitCode !== null || child.signalCode !== null || undefined,
        ),
      20_000,
      "the reduced npm start to be ready",
    );
    expect(output.stderr).toContain("ready\n");
    const startedLine = events(output.stdout).find((e) => e.event === "component_started");
    entry.standInPid = startedLine!.pid!;
    return entry;
  }

  /** The JSON lines of its stdout (the stand-in also prints a line that is not JSON), the last one once complete. */
  function events(stdout: string) {
    return stdout
      .split("\n")
      .slice(0, -1)
      .filter((line) => line.startsWith("{"))
      .map(
        (line) =>
          JSON.parse(line) as {
            event: string;
            signal?: string;
            child?: string;
            pid?: number;
            lines?: number;
            message?: string;
          },
      );
  }

  function running(pid: number): boolean {
    if (pid <= 0) throw new Error(`not a pid: ${pid}`);
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  // `npm start | tee start.log`, then Ctrl-C: the terminal's SIGINT ends tee too, and the children's last lines,
  // relayed while the stack stops, must not end npm start before it has stopped what it started.
  it("stops cleanly on SIGINT once the reader of its stdout is gone", { timeout: 30_000 }, async () => {
    const { child, output, exited, logDir } = await startFixture();
    child.stdout.destroy();
    child.kill("SIGINT");
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output.stderr).not.toContain("EPIPE");
    expect(output.stderr).toContain("stopped cleanly\n");
    // The child's lines still reach its log file, its last one too.
    expect(fileEvents(readFileSync(join(logDir, "api.log"), "utf8")).at(-1)).toBe("stopped");
  });

  // `npm start | less`: less reads only what it shows. The relay must not wait for it, or the supervisor stops
  // reading its children's output, they block writing it, and the whole stack stands still.
  it(
    "keeps its components running while its stdout's reader has stopped reading, and says what it dropped",
    { timeout: 30_000 },
    async () => {
      const { child, output, exited, logDir } = await startFixture({ lines: 1 });
      child.stdout.pause();
      await new Promise((resolve) => setTimeout(resolve, 2_000)); // the pipe, and what may wait in memory, fill
      const before = statSync(join(logDir, "api.log")).size;
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      // About 1 MB a second when it keeps running; nothing when it waits.
      expect(statSync(join(logDir, "api.log")).size - before).toBeGreaterThan(200_000);
      child.stdout.resume();
      await until(
        () => Promise.resolve(events(output.stdout).find((e) => e.event === "stdout_lines_dropped")),
        10_000,
        "the dropped lines to be counted",
      );
      // One report per time the reader fell behind: the fixture keeps writing while the pipe drains, so a second,
      // small one may follow the first.
      const dropped = events(output.stdout).filter((e) => e.event === "stdout_lines_dropped");
      expect(dropped.length).toBeGreaterThan(0);
      for (const report of dropped) {
        expect(report).toMatchObject({ level: "warn", component: "start" });
        expect(report.lines).toBeGreaterThan(0);
        expect(report.message).toContain(logDir);
      }
      child.kill("SIGINT");
      expect(await exited).toEqual({ code: 0, signal: null });
      expect(output.stderr).toContain("stopped cleanly\n");
    },
  );

  // npm forwards SIGINT to the script it runs, which also gets the terminal's own: one Ctrl-C arrives twice, about a
  // millisecond apart. The second is the same request, and must not end npm start halfway through its stop.
  it("stops cleanly when one Ctrl-C arrives twice, from the terminal and from npm", { timeout: 30_000 }, async () => {
    const { child, output, exited } = await startFixture({ stopMs: 500 });
    child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 3));
    child.kill("SIGINT");
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output.stderr).toContain("servers stopped\nstopped cleanly\n");
    expect(events(output.stdout).filter((e) => e.event === "stopping" || e.event === "stop_forced")).toEqual([
      expect.objectContaining({ event: "stopping", signal: "SIGINT" }),
    ]);
  });

  // A stop that hangs, and Ctrl-C again: the components are SIGKILLed, but its Redis, Postgres and pid file are
  // still stopped and removed, rather than left behind by an npm start that died.
  it(
    "on a second Ctrl-C later, SIGKILLs its components, still runs the rest of its stop and exits 1",
    { timeout: 30_000 },
    async () => {
      const { child, output, exited, standInPid } = await startFixture({ stopMs: 60_000 });
      child.kill("SIGINT");
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect(running(standInPid)).toBe(true); // still in its clean stop
      child.kill("SIGINT");
      expect(await exited).toEqual({ code: 1, signal: null });
      expect(output.stderr).toContain("servers stopped\nstopped by force\n");
      expect(events(output.stdout)).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ event: "stop_forced", level: "warn", signal: "SIGINT" }),
          expect.objectContaining({ event: "component_stopped", child: "api", signal: "SIGKILL" }),
        ]),
      );
      expect(running(standInPid)).toBe(false);
    },
  );

  // A closed terminal or ssh session: the shell passes its SIGHUP on to its jobs, and the kernel sends the
  // foreground job one more; the second must not end the stop the first began (which takes 500 ms here, so that the
  // second lands in it).
  it("stops cleanly on SIGHUP, a second one included", { timeout: 30_000 }, async () => {
    const { child, output, exited } = await startFixture({ stopMs: 500 });
    child.kill("SIGHUP");
    await until(
      () =>
        Promise.resolve(
          output.stdout.includes('"event":"stopping"') ||
            child.exitCode !== null ||
            child.signalCode !== null ||
            undefined,
        ),
      10_000,
      "stopping",
    );
    child.kill("SIGHUP");
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(output.stderr).toContain("stopped cleanly\n");
    expect(events(output.stdout).filter((e) => e.event === "stopping")).toEqual([
      expect.objectContaining({ component: "start", signal: "SIGHUP" }),
    ]);
    expect(events(output.stdout).at(-1)).toMatchObject({ event: "component_stopped", child: "api" });
  });

  // Its children stop when it dies, even by SIGKILL (the IPC channel closes); the stand-in too, so a test that
  // catches npm start dying leaves nothing running.
  it("leaves no component running when it is killed", { timeout: 30_000 }, async () => {
    const { child, exited, standInPid } = await startFixture();
    child.kill("SIGKILL");
    await exited;
    await until(() => Promise.resolve(running(standInPid) ? undefined : true), 10_000, "the stand-in to stop");
  });
});
