/**
 * `npm start`'s pid file (`<DATA_DIR>/start.pid`): one stack per data folder. It holds the pid alone, so that
 * `kill $(cat .data/start.pid)` stops the stack; a clean stop removes it. A file left by a run that was killed is
 * taken over; one naming a running `npm start` of a paper-broker checkout (this one or another whose `DATA_DIR` is the
 * same folder) stops this one.
 */
import { existsSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ConfigError } from "./config.ts";

/** What a second stack beside a running one needs: a data folder and ports (its Redis and Postgres find free ones). */
const SECOND_STACK =
  "for a second stack beside it set DATA_DIR, PORT, STREAM_PORT, and ENGINE_METRICS_PORT, WORKER_METRICS_PORT, " +
  "POLLER_METRICS_PORT, API_METRICS_PORT and STREAM_METRICS_PORT (0: any free port, or off)";

/**
 * `startScript`: the absolute path of the script this process runs (`scripts/start.mjs`); the `name` in the
 * `package.json` beside its folder says which project's npm start counts as running.
 */
export function claimPidFile(file: string, startScript: string): void {
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" }); // atomic: two starts cannot both create it
    return;
  } catch {
    const pid = Number(readFileSync(file, "utf8"));
    if (Number.isInteger(pid) && pid > 0 && isOtherStart(pid, startScript)) {
      throw new ConfigError(`already running (pid ${pid}, ${file}); stop it first, or ${SECOND_STACK}`);
    }
  }
  // Left by a run that was killed: take it over.
  writeFileSync(file, String(process.pid));
}

/**
 * Whether `pid` is another running `npm start` of this project, from any checkout. Not this process nor the one
 * that launched it: a container restarted with the data folder on a volume numbers its processes from 1 again, so
 * the dead run's pid is often this run's own. After a reboot the number may belong to an unrelated process, hence
 * the command line check.
 */
function isOtherStart(pid: number, startScript: string): boolean {
  if (pid === process.pid || pid === process.ppid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (!existsSync("/proc/self")) return true; // no /proc (macOS): alive is the best we know
  return isProcess(pid) && runsScript(pid, startScript);
}

/**
 * Whether `pid` names a process, not a thread: on Linux they share one number space, and a dead run's number is
 * often one of this run's own threads after a container restart (they start right after its main thread).
 */
function isProcess(pid: number): boolean {
  try {
    const tgid = /^Tgid:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return tgid === undefined || Number(tgid) === pid;
  } catch {
    return false; // gone since
  }
}

/**
 * Whether process `pid` is Node running `script` or the same project's `scripts/start.mjs` in another checkout: its
 * command line starts with `node` and an argument that is no option names such a file, resolved from the process's
 * working directory (npm start runs `node scripts/start.mjs` from the checkout). Two checkouts may share a data folder
 * (an absolute `DATA_DIR`), and a second stack on it would adopt and then stop the first one's Redis and Postgres.
 * Another project's `scripts/start.mjs`, an editor open on the file, anything named `…start…` is not.
 */
function runsScript(pid: number, script: string): boolean {
  let argv: string[];
  let cwd: string;
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return false; // gone since, or another user's process: not this user's npm start
  }
  if (!basename(argv[0] ?? "").startsWith("node")) return false;
  const wanted = realPath(script);
  const project = startScriptProject(wanted);
  return argv.slice(1).some((arg) => {
    if (arg === "" || arg.startsWith("-")) return false;
    const path = realPath(resolve(cwd, arg));
    return path === wanted || (project !== undefined && startScriptProject(path) === project);
  });
}

/** The package name of the checkout whose `scripts/start.mjs` `path` is, if it is one. */
function startScriptProject(path: string): string | undefined {
  const scripts = dirname(path);
  if (basename(path) !== "start.mjs" || basename(scripts) !== "scripts") return undefined;
  try {
    const { name } = JSON.parse(readFileSync(join(dirname(scripts), "package.json"), "utf8")) as { name?: unknown };
    return typeof name === "string" && name !== "" ? name : undefined;
  } catch {
    return undefined;
  }
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
