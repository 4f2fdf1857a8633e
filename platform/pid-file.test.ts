// npm start's pid file on real files and processes: a dead run's file is taken over, a live npm start's stops this
// one, and a file naming this very process (a container restarted with the data folder kept) is taken over.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "./config.ts";
import { claimPidFile } from "./pid-file.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function pidFile(content?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "pid-file-"));
  dirs.push(dir);
  const file = join(dir, "start.pid");
  if (content !== undefined) writeFileSync(file, content);
  return file;
}

describe("claimPidFile", () => {
  it("creates the file with this process's pid", () => {
    const file = pidFile();
    claimPidFile(file);
    expect(readFileSync(file, "utf8")).toBe(String(process.pid));
  });

  it("takes over a file left by a run that is gone", () => {
    for (const stale of ["999999999", "not a pid"]) {
      const file = pidFile(stale);
      claimPidFile(file);
      expect(readFileSync(file, "utf8"), stale).toBe(String(process.pid));
    }
  });

  it("takes over a file naming this very npm start (a restarted container numbers its processes again)", () => {
    const file = pidFile();
    const fixture = fileURLToPath(new URL("./testing/pid-file-fixture.ts", import.meta.url));
    const run = spawnSync(process.execPath, ["--import", "tsx", fixture, file, "start"], { encoding: "utf8" });
    expect([run.status, run.stdout]).toEqual([0, "claimed"]);
  });

  it("refuses when the file names another running npm start", async () => {
    // A live process whose command line says "start", as npm start's does.
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", "start"], { stdio: "ignore" });
    try {
      await new Promise((resolve) => other.once("spawn", resolve));
      const file = pidFile(String(other.pid));
      expect(() => claimPidFile(file)).toThrow(ConfigError);
      expect(() => claimPidFile(file)).toThrow(`already running (pid ${other.pid}`);
      expect(readFileSync(file, "utf8")).toBe(String(other.pid));
    } finally {
      other.kill();
    }
  });
});
