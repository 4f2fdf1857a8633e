/**
 * Logger benchmark: `npm run bench:log` (~20 s, nothing else needed). Prints a table, then one JSON line with the
 * figures: the time one log call takes (ns, median over BENCH_RUNS child processes, default 5), for the lines the
 * system writes most: the API's error line (an Error with its stack), a small info line, one with a bigint, and a
 * debug call below the level (the cost of a log call left in a hot path).
 *
 * Each run is a child process logging through the real stdout destination (synchronous writes): once with stdout
 * on /dev/null (the formatting and the write call), once on a pipe this process drains (as `npm start` reads its
 * children; a write waits when the reader falls behind).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createLogger } from "../log.ts";

const CALLS = 100_000;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

const CASES = {
  api_error: "error line with an Error",
  info_small: "info line, 3 fields",
  info_bigint: "info line with a bigint",
  debug_filtered: "debug call below the level",
} as const;
type Case = keyof typeof CASES;

/** In the child: each case once to warm up, then timed; the figures go to stderr as one JSON line. */
function measure(): void {
  const log = createLogger("api", { level: "info", base: { holder: "bench:1" } });
  const error = new Error("connect ECONNREFUSED 127.0.0.1:6379");
  const bodies: Record<Case, () => void> = {
    api_error: () =>
      log.error("backend_unavailable", { route: "/api/v1/trade/create", status: 503, requestId: "r-1", error }),
    info_small: () => log.info("order_accepted", { userId: "u_abc", tradeId: "t_123", ms: 1.25 }),
    info_bigint: () => log.info("snapshot_saved", { lastInputId: "1-0", bytes: 933, micros: 123456789n }),
    debug_filtered: () => log.debug("detail", { a: 1, b: "x" }),
  };
  const ns: Record<string, number> = {};
  for (const [name, body] of Object.entries(bodies)) {
    for (let i = 0; i < CALLS; i++) body();
    const started = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) body();
    ns[name] = Number(process.hrtime.bigint() - started) / CALLS;
  }
  process.stderr.write(`${JSON.stringify(ns)}\n`);
}

function run(stdout: "devnull" | "pipe"): Promise<Record<Case, number>> {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--child"], {
    stdio: ["ignore", stdout === "devnull" ? "ignore" : "pipe", "pipe"],
    env: { ...process.env, LOG_FORMAT: "json", LOG_LEVEL: "" },
  });
  child.stdout?.resume(); // drained as fast as this process can read
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      const last = err.trim().split("\n").at(-1) ?? "";
      if (code !== 0 || !last.startsWith("{")) reject(new Error(`bench child exited ${code}: ${err}`));
      else resolve(JSON.parse(last) as Record<Case, number>);
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const samples = { devnull: [] as Record<Case, number>[], pipe: [] as Record<Case, number>[] };
  for (let i = 0; i < RUNS; i++) {
    samples.devnull.push(await run("devnull")); // interleaved: a busy moment of the machine hits both alike
    samples.pipe.push(await run("pipe"));
  }
  const figures: Record<string, Record<string, number>> = {};
  const rows = [
    `${`ns per call, median of ${RUNS} runs`.padEnd(40)} ${"/dev/null".padStart(10)} ${"pipe".padStart(10)}`,
  ];
  for (const [name, label] of Object.entries(CASES) as [Case, string][]) {
    const devnull = Math.round(median(samples.devnull.map((s) => s[name])));
    const pipe = Math.round(median(samples.pipe.map((s) => s[name])));
    figures[name] = { devnullNs: devnull, pipeNs: pipe };
    rows.push(`${label.padEnd(40)} ${String(devnull).padStart(10)} ${String(pipe).padStart(10)}`);
  }
  process.stdout.write(`${rows.join("\n")}\n${JSON.stringify({ bench: "log", calls: CALLS, runs: RUNS, figures })}\n`);
}

if (process.argv.includes("--child")) measure();
else await main();
