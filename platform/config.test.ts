import { describe, expect, it } from "vitest";
import { fork, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, repositoryFiles } from "../scripts/repository-files.ts";
import {
  ConfigError,
  keyPrefix,
  oneOf,
  redisUrl,
  runStopSteps,
  settledWithin,
  text,
  url,
  wholeNumber,
} from "./config.ts";
import { createLogger } from "./log.ts";

describe("config readers", () => {
  it("use the fallback when unset or blank, and the value when set", () => {
    expect(text({}, "A", "x")).toBe("x");
    expect(text({ A: "  " }, "A", "x")).toBe("x");
    expect(text({ A: "y" }, "A", "x")).toBe("y");
    expect(wholeNumber({ N: "250" }, "N", 10, 1, 1000)).toBe(250);
    expect(oneOf({ F: "sim" }, "F", ["auto", "sim"], "auto")).toBe("sim");
    expect(url({}, "U", "redis://127.0.0.1:6379", ["redis:", "rediss:"])).toBe("redis://127.0.0.1:6379");
  });

  it("refuse bad values with a message that names the variable", () => {
    expect(() => text({}, "DATABASE_URL")).toThrow(new ConfigError("DATABASE_URL is required"));
    expect(() => wholeNumber({ N: "1e3" }, "N", 10, 1, 1000)).toThrow(
      'N must be a whole number from 1 to 1000, got "1e3"',
    );
    expect(() => wholeNumber({ N: "1001" }, "N", 10, 1, 1000)).toThrow(ConfigError);
    expect(() => wholeNumber({ N: "-1" }, "N", 10, 1, 1000)).toThrow(ConfigError);
    expect(() => oneOf({ F: "live" }, "F", ["auto", "sim"], "auto")).toThrow('F must be one of auto, sim, got "live"');
    expect(() => url({ U: "not a url" }, "U", undefined, ["redis:"])).toThrow(
      new ConfigError('U is not a URL: "not a url"'),
    );
    expect(() => url({ U: "http://x" }, "U", undefined, ["redis:"])).toThrow(
      new ConfigError('U must use redis:, got "http://x"'),
    );
  });

  it("echo a refused URL whole, its password masked, and give one without a scheme the URL it likely meant", () => {
    const redis = ["redis:", "rediss:"];
    expect(() => url({ REDIS_URL: "localhost:6380" }, "REDIS_URL", undefined, redis)).toThrow(
      new ConfigError(
        'REDIS_URL must use redis: or rediss:, got "localhost:6380" (did you mean redis://localhost:6380?)',
      ),
    );
    expect(() => url({ REDIS_URL: "127.0.0.1:6380" }, "REDIS_URL", undefined, redis)).toThrow(
      new ConfigError('REDIS_URL is not a URL: "127.0.0.1:6380" (did you mean redis://127.0.0.1:6380?)'),
    );
    expect(() => url({ D: "http://me:s3cret@db:5432/x" }, "D", undefined, ["postgres:"])).toThrow(
      new ConfigError('D must use postgres:, got "http://me:***@db:5432/x"'),
    );
    expect(() => url({ D: "me:s3cret@db:5432/x" }, "D", undefined, ["postgres:"])).toThrow(
      new ConfigError('D must use postgres:, got "me:***@db:5432/x" (did you mean postgres://me:***@db:5432/x?)'),
    );
  });
});

describe("redisUrl", () => {
  it("takes redis:// and rediss://, this machine's Redis when unset", () => {
    expect(redisUrl({})).toBe("redis://127.0.0.1:6379");
    expect(redisUrl({ REDIS_URL: "redis://redis.internal:6379" })).toBe("redis://redis.internal:6379");
    expect(redisUrl({ REDIS_URL: "rediss://default:pw@eu1-fine-cat-1234.upstash.io:6379" })).toBe(
      "rediss://default:pw@eu1-fine-cat-1234.upstash.io:6379",
    );
    // Only Upstash's own domain: a name that merely ends in the same letters is any other host.
    expect(redisUrl({ REDIS_URL: "redis://notupstash.io:6379" })).toBe("redis://notupstash.io:6379");
  });

  it("refuses redis:// (no TLS) for an Upstash host, naming REDIS_URL and rediss://, its password masked", () => {
    expect(() => redisUrl({ REDIS_URL: "redis://default:s3cret@eu1-fine-cat-1234.upstash.io:6379" })).toThrow(
      new ConfigError(
        'REDIS_URL names an Upstash host, which takes TLS only: use rediss://, got "redis://default:***@eu1-fine-cat-1234.upstash.io:6379" (did you mean rediss://default:***@eu1-fine-cat-1234.upstash.io:6379?)',
      ),
    );
    expect(() => redisUrl({ REDIS_URL: "REDIS://Fine-Cat.Upstash.IO" })).toThrow(/^REDIS_URL names an Upstash host/);
  });
});

describe("onStopRequest", () => {
  it("ends an orphan whose clean stop hangs once its budget is spent, with exit 1 and a stop_timeout line", async () => {
    const child = fork(new URL("./testing/hanging-stop-fixture.ts", import.meta.url), ["300"], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await new Promise((resolve) => child.once("message", resolve));
    child.disconnect(); // the supervisor gone
    expect(await exited).toBe(1);
    expect(stdout).toBe("stopping supervisor_gone\n");
    expect(JSON.parse(stderr.trim().split("\n").at(-1)!)).toMatchObject({ event: "stop_timeout", afterMs: 300 });
  });

  /** hanging-stop-fixture.ts once ready, on its own (no IPC channel: `npm run engine` in a terminal). */
  async function onItsOwn(stopBudgetMs: number) {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "platform/testing/hanging-stop-fixture.ts", `${stopBudgetMs}`],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const output = { stdout: "", stderr: "" };
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output.stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    await waitFor(() => output.stdout.includes("ready\n") || child.exitCode !== null);
    expect(output.stdout).toBe("ready\n");
    return { child, output, exited };
  }

  async function waitFor(done: () => boolean, ms = 10_000): Promise<void> {
    for (const end = Date.now() + ms; !done();) {
      if (Date.now() > end) throw new Error("timed out");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  const alive = (child: ChildProcess) => ({ code: child.exitCode, signal: child.signalCode });

  // Run from a terminal through npm, a Ctrl-C reaches the process twice: from the terminal and as npm's copy.
  it(
    "takes a stop signal within a second of the first as the same request; a later one ends a hanging stop",
    { timeout: 10_000 },
    async () => {
      const { child, output, exited } = await onItsOwn(60_000);
      try {
        child.kill("SIGINT");
        await waitFor(() => output.stdout.includes("stopping"));
        child.kill("SIGINT");
        child.kill("SIGTERM");
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(alive(child)).toEqual({ code: null, signal: null });
        expect(output.stdout).toBe("ready\nstopping SIGINT\n");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        child.kill("SIGINT"); // asked again: the signal's own action, as with no listener
        expect(await exited).toEqual({ code: null, signal: "SIGINT" });
      } finally {
        child.kill("SIGKILL");
      }
    },
  );

  // Its terminal closed, nobody can press Ctrl-C again: a clean stop that hangs must not keep it running for good.
  it(
    "ends a process on its own whose clean stop hangs after a SIGHUP, once its budget is spent",
    { timeout: 10_000 },
    async () => {
      const { child, output, exited } = await onItsOwn(300);
      try {
        child.kill("SIGHUP");
        expect(
          await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("running"), 5_000))]),
        ).toEqual({
          code: 1,
          signal: null,
        });
        expect(output.stdout).toBe("ready\nstopping SIGHUP\n");
        expect(JSON.parse(output.stderr.trim().split("\n").at(-1)!)).toMatchObject({
          event: "stop_timeout",
          afterMs: 300,
        });
      } finally {
        child.kill("SIGKILL");
      }
    },
  );
});

describe("onStopRequest on SIGHUP", () => {
  // A closed terminal: the shell passes its SIGHUP on to the foreground job, and the kernel sends it one more as the
  // shell exits. Both ask for the one stop; the second must not kill the process half-way through it.
  it("asks for the stop once, and a second SIGHUP leaves that stop running", { timeout: 10_000 }, async () => {
    const child = fork(new URL("./testing/hanging-stop-fixture.ts", import.meta.url), ["60000"], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    try {
      let stdout = "";
      const stopping = new Promise<void>((resolve) => {
        child.stdout!.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          if (stdout.includes("stopping")) resolve();
        });
        child.once("exit", () => resolve());
      });
      await new Promise((resolve) => child.once("message", resolve));
      child.kill("SIGHUP");
      await stopping;
      child.kill("SIGHUP");
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect({ code: child.exitCode, signal: child.signalCode }).toEqual({ code: null, signal: null });
      expect(stdout).toBe("stopping SIGHUP\n");
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("runStopSteps", () => {
  // npm start's stop: Postgres not stopped in time must still leave Redis stopped and the pid file removed.
  it("runs every step in order whatever the ones before did, logs each failure, gives the first", async () => {
    const ran: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("start", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const failed = await runStopSteps(
      [
        { name: "components", run: () => Promise.resolve(void ran.push("components")) },
        {
          name: "postgres",
          run: () => {
            ran.push("postgres");
            return Promise.reject(new Error("Postgres (pid 42) did not stop"));
          },
        },
        {
          name: "redis",
          run: () => {
            ran.push("redis");
            throw new Error("no such process"); // a step that throws before it returns a promise
          },
        },
        { name: "pid_file", run: () => Promise.resolve(void ran.push("pid_file")) },
      ],
      log,
    );
    expect(ran).toEqual(["components", "postgres", "redis", "pid_file"]);
    expect((failed?.error as Error).message).toBe("Postgres (pid 42) did not stop");
    expect(lines).toEqual([
      expect.objectContaining({
        level: "error",
        event: "stop_step_failed",
        step: "postgres",
      }),
      expect.objectContaining({ event: "stop_step_failed", step: "redis" }),
    ]);
    expect(lines[0]!.error).toMatchObject({ message: "Postgres (pid 42) did not stop" });
  });

  it("gives undefined, and logs nothing, when every step succeeds", async () => {
    const lines: string[] = [];
    const log = createLogger("start", { sink: (line) => lines.push(line) });
    expect(await runStopSteps([{ name: "pid_file", run: () => Promise.resolve() }], log)).toBeUndefined();
    expect(lines).toEqual([]);
  });
});

describe("settledWithin", () => {
  const never = new Promise<string>(() => undefined);

  it("gives what the work resolves with, when it settles first", async () => {
    expect(await settledWithin(Promise.resolve("done"), 1_000, new AbortController().signal)).toBe("done");
  });

  it("gives undefined once the time has passed, or at once when stopped (already, or meanwhile)", async () => {
    const startedAt = performance.now();
    expect(await settledWithin(never, 50, new AbortController().signal)).toBeUndefined();
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(45);
    expect(await settledWithin(never, 60_000, AbortSignal.abort())).toBeUndefined();
    const stop = new AbortController();
    const waiting = settledWithin(never, 60_000, stop.signal);
    stop.abort();
    expect(await waiting).toBeUndefined();
  });

  it("rejects at once as the work does when it rejects first, and drops a rejection that comes after", async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", record);
    try {
      const startedAt = performance.now();
      await expect(
        settledWithin(Promise.reject(new Error("boom")), 2_000, new AbortController().signal),
      ).rejects.toThrow("boom");
      expect(performance.now() - startedAt).toBeLessThan(1_000);

      let fail: (error: Error) => void = () => undefined;
      const late = new Promise<string>((_resolve, reject) => (fail = reject));
      expect(await settledWithin(late, 10, new AbortController().signal)).toBeUndefined();
      fail(new Error("too late"));
      await new Promise((resolve) => setTimeout(resolve, 20)); // Node reports an unhandled rejection by then
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", record);
    }
  });
});

describe("keyPrefix", () => {
  it("takes up to 64 printable ASCII characters without spaces, and none when unset or blank", () => {
    expect(keyPrefix({})).toBe("");
    expect(keyPrefix({ KEY_PREFIX: "  " })).toBe("");
    expect(keyPrefix({ KEY_PREFIX: "staging:" })).toBe("staging:");
    expect(keyPrefix({ KEY_PREFIX: " test:{a}~!: " })).toBe("test:{a}~!:");
    expect(keyPrefix({ KEY_PREFIX: "x".repeat(64) })).toBe("x".repeat(64));
  });

  it("refuses anything else, naming the variable, the rule and the value", () => {
    expect(() => keyPrefix({ KEY_PREFIX: "paper broker:" })).toThrow(
      new ConfigError('KEY_PREFIX must be at most 64 printable ASCII characters without spaces, got "paper broker:"'),
    );
    for (const bad of ["x".repeat(65), "préfixe:", "a\tb", "a\nb"])
      expect(() => keyPrefix({ KEY_PREFIX: bad }), JSON.stringify(bad)).toThrow(ConfigError);
  });

  // Each process checks it at its own start: a prefix that only the poller refused stopped npm start half-way, once
  // the engines and the worker were up under it.
  it("is how every process reads KEY_PREFIX", () => {
    const product = repositoryFiles(["testing", "bench"]).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
    const reads =
      /\b[A-Za-z_]*[eE]nv\??\.KEY_PREFIX\b|[eE]nv\[\s*"KEY_PREFIX"\s*\]|\(\s*[A-Za-z_]*[eE]nv\s*,\s*"KEY_PREFIX"/;
    const readers = product.filter((f) => reads.test(readFileSync(join(REPO_ROOT, f), "utf8")));
    expect(readers).toEqual(["platform/config.ts"]);
    const imports = /import \{[^}]*\bkeyPrefix\b[^}]*\} from "\.\.\/platform\/config\.ts"/;
    const callers = product.filter((f) => imports.test(readFileSync(join(REPO_ROOT, f), "utf8")));
    expect(callers.sort()).toEqual(
      [
        "engine/main.ts",
        "functions/config.ts",
        "poller/config.ts",
        "scripts/start.ts",
        "stream/config.ts",
        "worker/main.ts",
      ].sort(),
    );
  });
});
