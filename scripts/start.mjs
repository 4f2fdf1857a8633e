// `npm start` on a fresh clone: installs the dependencies if they are missing or older than the lockfile, then runs
// scripts/start.ts through tsx in this same process (so Ctrl-C and SIGTERM reach the supervisor directly).
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
// 20.12 and 21.7 brought process.loadEnvFile, which start.ts reads .env with: an older Node would start the system
// without what .env sets (its own Redis and Postgres instead of REDIS_URL and DATABASE_URL, say), without a word.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 12) || (major === 21 && minor < 7)) {
  process.stderr.write(
    `paper-broker needs Node 20.12 or newer (on Node 21, 21.7 or newer); this is ${process.version}.\n`,
  );
  process.exit(1);
}
const installed = `${root}node_modules/.package-lock.json`;
const lock = `${root}package-lock.json`;
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  process.stderr.write("start: installing dependencies (npm ci)…\n");
  execSync("npm ci --no-audit --no-fund", { cwd: root, stdio: "inherit" });
}
const { register } = await import("tsx/esm/api");
register();
await import("./start.ts");
