/**
 * The supervisor's relay of a child's output: the log file gets the JSON lines as written, the terminal one
 * readable line each (JSON when it is not a terminal, or LOG_FORMAT says so); LOG_LEVEL filters both, while the
 * child itself always logs JSON at info, so its ready event still comes through.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Component } from "./components.ts";
import { createLogger } from "./log.ts";
import { logRelay, Supervisor } from "./supervisor.ts";

// The fixture stands in for the API: nodeArgs puts the component's bundle after these flags, as an argument the
// fixture ignores.
const FIXTURE: Component = {
  name: "api",
  entry: "platform/testing/log-fixture.ts",
  nodeFlags: ["--import", "tsx", "platform/testing/log-fixture.ts", "serve", "0"],
  readyEvent: "ready",
  metricsPort: 0,
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
