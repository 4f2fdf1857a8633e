/**
 * `npm start`'s pid file (`<DATA_DIR>/start.pid`): one stack per data folder. A file left by a run that was killed
 * is taken over; one naming a running `npm start` stops this one.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { ConfigError } from "./config.ts";

export function claimPidFile(file: string): void {
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" }); // atomic: two starts cannot both create it
    return;
  } catch {
    const pid = Number(readFileSync(file, "utf8"));
    if (Number.isInteger(pid) && pid > 0 && isOtherStart(pid)) {
      throw new ConfigError(`already running (pid ${pid}, ${file}); stop it first, or set DATA_DIR for a second stack`);
    }
  }
  // Left by a run that was killed: take it over.
  writeFileSync(file, String(process.pid));
}

/**
 * Whether `pid` is another running `npm start`. Not this process nor the one that launched it: a container
 * restarted with the data folder on a volume numbers its processes from 1 again, so the dead run's pid is often
 * this run's own. After a reboot the number may belong to an unrelated process, hence the command line check.
 */
function isOtherStart(pid: number): boolean {
  if (pid === process.pid || pid === process.ppid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("start");
  } catch {
    return true; // no /proc (macOS): alive is the best we know
  }
}
