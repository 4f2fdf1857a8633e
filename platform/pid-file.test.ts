// npm start's pid file on real files and processes: a dead run's file is taken over, a live npm start's of this
// project (from this checkout or another sharing the data folder) stops this one, a file naming this very process (a
// container restarted with the data folder kept) or a process that runs something else (its pid reused) is taken over.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "./config.ts";
import { claimPidFile } from "./pid-file.ts";

const START_SCRIPT = fileURLToPath(new URL("../scripts/start.mjs", import.meta.url));
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
    claimPidFile(file, START_SCRIPT);
    expect(readFileSync(file, "utf8")).toBe(String(process.pid));
  });

  it("takes over a file left by a run that is gone", () => {
    for (const stale of ["999999999", "not a pid"]) {
      const file = pidFile(stale);
      claimPidFile(file, START_SCRIPT);
      expect(readFileSync(file, "utf8"), stale).toBe(String(process.pid));
    }
  });

  it("takes over a file naming this very npm start (a restarted container numbers its processes again)", () => {
    const file = pidFile();
    const fixture = fileURLToPath(new URL("./testing/pid-file-fixture.ts", import.meta.url));
    const run = spawnSync(process.execPath, ["--import", "tsx", fixture, file, "start"], { encoding: "utf8" });
    expect([run.status, run.stdout]).toEqual([0, "claimed"]);
  });

  it("refuses when the file names another running npm start, of this checkout or another one", async () => {
    // npm start runs `node scripts/start.mjs` from the checkout's folder: stand-ins that only wait, run so. Two
    // checkouts share a data folder when DATA_DIR is the same absolute path.
    const checkout = startScriptIn("paper-broker");
    const others = [
      await running(process.execPath, ["scripts/start.mjs"], { cwd: checkout.root }),
      await running(process.execPath, ["scripts/start.mjs"], { cwd: startScriptIn("paper-broker").root }),
      await running(process.execPath, [startScriptIn("paper-broker").script]),
    ];
    try {
      for (const other of others) {
        const file = pidFile(String(other.pid));
        expect(() => claimPidFile(file, checkout.script), String(other.spawnargs)).toThrow(ConfigError);
        expect(() => claimPidFile(file, checkout.script)).toThrow(
          `already running (pid ${other.pid}, ${file}); stop it first, or for a second stack beside it set DATA_DIR, ` +
            "PORT, STREAM_PORT, and ENGINE_METRICS_PORT, WORKER_METRICS_PORT, POLLER_METRICS_PORT, API_METRICS_PORT " +
            "and STREAM_METRICS_PORT (0: any free port, or off)",
        );
        expect(readFileSync(file, "utf8")).toBe(String(other.pid));
      }
    } finally {
      for (const other of others) other.kill();
    }
  });

  it("takes over a file whose number is now a thread of a running npm start", async () => {
    const checkout = startScriptIn("paper-broker");
    const other = await running(process.execPath, ["scripts/start.mjs"], { cwd: checkout.root });
    try {
      // Node starts its threads with the process: their ids are numbers a dead run's file may hold.
      const threadsOf = () => readdirSync(`/proc/${other.pid}/task`).filter((id) => id !== String(other.pid));
      await expect.poll(() => threadsOf().length, { timeout: 5000 }).toBeGreaterThan(0);
      const file = pidFile(threadsOf()[0]);
      claimPidFile(file, checkout.script);
      expect(readFileSync(file, "utf8")).toBe(String(process.pid));
    } finally {
      other.kill();
    }
  });

  it("takes over a file whose pid now names another process, even one whose command line says start", async () => {
    const checkout = startScriptIn("paper-broker");
    // After a reboot the number may be any process's: one named like a restart helper, another project's npm start
    // (the same command line, another package), a script named start.mjs outside a checkout's scripts folder.
    const elsewhere = startScriptIn("paper-broker");
    writeFileSync(join(elsewhere.root, "start.mjs"), "setTimeout(() => {}, 30_000);\n");
    const others = [
      await running("sleep", ["30"], { argv0: "/usr/lib/restart-helper" }),
      await running(process.execPath, ["scripts/start.mjs"], { cwd: startScriptIn("another-project").root }),
      await running(process.execPath, ["scripts/start.mjs"], { cwd: startScriptIn(undefined).root }),
      await running(process.execPath, ["start.mjs"], { cwd: elsewhere.root }),
      await running(process.execPath, ["-e", "setTimeout(() => {}, 30000)", "start"]),
    ];
    try {
      for (const other of others) {
        const file = pidFile(String(other.pid));
        claimPidFile(file, checkout.script);
        expect(readFileSync(file, "utf8"), String(other.spawnargs)).toBe(String(process.pid));
      }
    } finally {
      for (const other of others) other.kill();
    }
  });
});

/**
 * A folder with a `scripts/start.mjs` that only waits and a `package.json` named `name` (none if undefined): a
 * checkout's npm start, as a command line shows it.
 */
function startScriptIn(name: string | undefined): { root: string; script: string } {
  const root = mkdtempSync(join(tmpdir(), "pid-file-checkout-"));
  dirs.push(root);
  mkdirSync(join(root, "scripts"));
  const script = join(root, "scripts", "start.mjs");
  writeFileSync(script, "setTimeout(() => {}, 30_000);\n");
  if (name !== undefined) writeFileSync(join(root, "package.json"), JSON.stringify({ name }));
  return { root, script };
}

async function running(command: string, args: string[], options: SpawnOptions = {}): Promise<ChildProcess> {
  const child = spawn(command, args, { ...options, stdio: "ignore" });
  await new Promise((resolve, reject) => child.once("spawn", resolve).once("error", reject));
  return child;
}
