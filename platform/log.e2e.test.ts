/**
 * Log lines survive the process ending right after them (process.exit, an uncaught throw, a worker thread's lines
 * when the main thread exits), and a bad LOG_LEVEL stops a component at start with one clear line.
 */
import { describe, expect, it } from "vitest";
import { spawnChild, spawnComponent } from "./testing/processes.ts";

const LINES = 200;

function runFixture(how: "exit" | "throw" | "thread" | "epipe") {
  return spawnChild(
    `log-${how}`,
    process.execPath,
    ["--import", "tsx", "platform/testing/log-fixture.ts", how, String(LINES)],
    {},
  );
}

describe("log lines when a process ends right after logging", () => {
  for (const [how, exit] of [
    ["exit", { code: 3, signal: null }],
    ["throw", { code: 1, signal: null }],
    ["thread", { code: 0, signal: null }],
  ] as const) {
    it(`are all written (${how})`, { timeout: 30_000 }, async () => {
      const child = runFixture(how);
      expect(await child.exited).toEqual(exit);
      // "exited" can come before the last of the pipe is read: wait for the stream's end.
      await new Promise((resolve) =>
        child.proc.stdout.readableEnded ? resolve(undefined) : child.proc.stdout.once("end", resolve),
      );
      const lines = child.lines.filter((l) => l.component === "fixture");
      expect(lines.map((l) => l.i)).toEqual(Array.from({ length: LINES + 1 }, (_, i) => i));
      expect(lines.at(-1)).toMatchObject({
        event: "last",
        level: "info",
        thread: how === "thread" ? "worker" : "main",
      });
      if (how === "throw") expect(child.other.join("\n")).toContain("broken invariant");
    });
  }
});

describe("log lines to a reader", () => {
  it("wait while it falls behind, and all arrive", { timeout: 30_000 }, async () => {
    const child = runFixture("exit");
    child.proc.stdout.pause(); // the pipe fills: the child's writes must wait, not drop or fail
    await new Promise((resolve) => setTimeout(resolve, 500));
    child.proc.stdout.resume();
    expect(await child.exited).toEqual({ code: 3, signal: null });
    await new Promise((resolve) =>
      child.proc.stdout.readableEnded ? resolve(undefined) : child.proc.stdout.once("end", resolve),
    );
    expect(child.lines.filter((l) => l.component === "fixture")).toHaveLength(LINES + 1);
  });

  it("are dropped, without failing the process, when the reader is gone", { timeout: 30_000 }, async () => {
    const child = runFixture("epipe");
    child.proc.stdout.destroy();
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.other).toContain("still running");
  });
});

describe("LOG_LEVEL", () => {
  it(
    "stops a component at start with exit code 2 and a line naming the variable and the choices",
    { timeout: 30_000 },
    async () => {
      const worker = spawnComponent("worker", {
        REDIS_URL: "redis://127.0.0.1:1",
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
        LOG_LEVEL: "verbose",
      });
      expect(await worker.exited).toEqual({ code: 2, signal: null });
      expect(worker.other.join("\n")).toContain(
        'worker: configuration error: LOG_LEVEL must be one of debug, info, warn, error, got "verbose"',
      );
      expect(worker.lines).toEqual([]);
    },
  );
});
