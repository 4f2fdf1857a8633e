/**
 * Feed-frame and request-body parsing benchmark: `npm run bench:frames` (pure CPU, no services, ~15 s). Prints a
 * table, then one JSON line with the figures.
 *
 * Frames go through the poller's whole decoding path: the Buffer ws delivers → text → JSON with exact numbers →
 * the checks and canonical prices of frames.ts. They are bookTicker frames for our four markets, shaped like the
 * recorded ones in testdata/ (which are included): prices as decimal strings with trailing zeros, times in µs,
 * `u` mostly a 10-digit number, every 8th a 19-digit one above 2^53 and every 16th a digit string.
 * Bodies are what the API parses: the small request bodies of the routes, and 16 KB ones (the body limit).
 *
 * Each parser is timed in the same process, in interleaved rounds whose order rotates; every figure is the median
 * over rounds. `JSON.parse` alone (no checks, and it rounds `u`) is the floor, for scale. A feed of 4 markets
 * delivers at most a few thousand frames/s: the table shows one core's share at FEED_PEAK frames/s.
 * BENCH_ROUNDS sets the rounds (default 15).
 */
import { readFileSync } from "node:fs";
import { ASSETS, type AssetConfig } from "../../contract/markets.ts";
import { seededRandom } from "../../platform/testing/seeded-random.ts";
import { parseJsonBody } from "../../functions/json-body.ts";
import { BODY_LIMIT_BYTES } from "../../functions/validate.ts";
import { frameText, marketTable, parseFrame, type FrameResult } from "../frames.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const FEED_PEAK = 5_000;
const FRAME_COUNT = 4_096;
const FRAME_PASSES = 8;
const BODY_PASSES = 20_000;
const BIG_BODY_PASSES = 200;

// --- inputs ---------------------------------------------------------------------------------------------------

const spotSol: AssetConfig = { ...ASSETS[2], symbol: "SOLSPOT", market: "SOL_USDC" };
const markets = marketTable([...ASSETS, spotSol]);
const recorded = readFileSync(new URL("../testdata/backpack-bookticker-real.jsonl", import.meta.url), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "");

function decimal(units: number, decimals: number): string {
  if (decimals === 0) return String(units);
  const digits = String(units).padStart(decimals + 1, "0");
  return `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}

function makeFrames(): Buffer[] {
  const random = seededRandom(7);
  const mids = new Map(ASSETS.map((a) => [a.market, Math.round(a.maxPriceTicks / 50)]));
  const frames: Buffer[] = recorded.map((line) => Buffer.from(line));
  let time = 1_736_172_777_497_712;
  let id = 1_802_083_092;
  for (let k = 0; frames.length < FRAME_COUNT; k++) {
    const asset = ASSETS[k % ASSETS.length]!;
    const mid = mids.get(asset.market)! + Math.round((random() - 0.5) * 20);
    mids.set(asset.market, mid);
    const spread = 1 + Math.floor(random() * 3);
    time += 50 + Math.floor(random() * 400);
    id += 1 + Math.floor(random() * 5);
    const u = k % 16 === 0 ? `"${id}"` : k % 8 === 0 ? `9${String(id).padStart(18, "0")}` : String(id);
    const size = () => decimal(1 + Math.floor(random() * 9_000), 2);
    const data =
      `{"A":"${size()}","B":"${size()}","E":${time + 8_513},"T":${time},` +
      `"a":"${decimal(mid + spread, asset.priceDecimals)}","b":"${decimal(mid, asset.priceDecimals)}",` +
      `"e":"bookTicker","s":"${asset.market}","u":${u}}`;
    frames.push(Buffer.from(`{"data":${data},"stream":"bookTicker.${asset.market}"}`));
  }
  return frames;
}

const SMALL_BODIES = [
  '{"asset":"ETH","type":"long","margin":"10","leverage":2}',
  '{"asset":"BTC","type":"short","margin":250.5,"leverage":10,"stopLoss":70000.5,"takeProfit":60000}',
  '{"asset":"ETH","side":"buy","quantity":1e-4}',
  '{"tradeId":"T0-123456"}',
  '{"email":"someone@example.com"}',
];

/** Bodies at the size limit: many small objects, and one long string. */
function bigBodies(): string[] {
  const item = '{"price":"4303.93","quantity":0.0015,"ok":true},';
  const items = item.repeat(Math.floor((BODY_LIMIT_BYTES - 100) / item.length)).slice(0, -1);
  const objects = `{"asset":"ETH","type":"long","margin":"10","leverage":2,"pad":[${items}]}`;
  const text = `{"email":"${"a".repeat(BODY_LIMIT_BYTES - 20)}@example.com"}`;
  return [objects, text];
}

// --- parsers ----------------------------------------------------------------------------------------------------

interface Parser {
  readonly name: string;
  readonly frame: (data: Buffer) => unknown;
  readonly body: (text: string) => unknown;
}

const PARSERS: readonly Parser[] = [
  {
    name: "lossless-json (frames.ts, json-body.ts)",
    frame: (data) => parseFrame(frameText(data), markets),
    body: parseJsonBody,
  },
  {
    name: "JSON.parse alone (floor: rounds u, no checks)",
    frame: (data) => JSON.parse(frameText(data)) as unknown,
    body: (text) => JSON.parse(text) as unknown,
  },
];
/** The parsers in use (the floor takes no part in refusing hostile nesting). */
const CHECKED = PARSERS.slice(0, 1);

// --- timing -----------------------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

let sink = 0;
function keep(value: unknown): void {
  if (value !== undefined) sink++;
}

/** Items per second over `passes` passes through `inputs`. */
function rate<T>(inputs: readonly T[], passes: number, run: (input: T) => unknown): number {
  const t0 = performance.now();
  for (let p = 0; p < passes; p++) for (const input of inputs) keep(run(input));
  return (inputs.length * passes * 1000) / (performance.now() - t0);
}

function main(): void {
  const frames = makeFrames();
  const big = bigBodies();
  const hostile = "[".repeat(BODY_LIMIT_BYTES);

  // Before anything is timed: every input is one production accepts, and the hostile one is refused.
  const production = PARSERS[0]!;
  frames.forEach((f, i) => {
    const result = production.frame(f) as FrameResult;
    if (result.kind !== "quote") throw new Error(`bench frame ${i} not accepted: ${JSON.stringify(result)}`);
  });
  for (const body of [...SMALL_BODIES, ...big]) {
    if (production.body(body) === undefined) throw new Error(`bench body refused: ${body.slice(0, 60)}`);
  }
  if (production.body(hostile) !== undefined) throw new Error("16 KB of nesting was accepted");

  const samples = PARSERS.map(() => ({ frames: [] as number[], small: [] as number[], big: [] as number[] }));
  const hostileSamples = CHECKED.map(() => [] as number[]);
  for (let round = -2; round < ROUNDS; round++) {
    for (let k = 0; k < PARSERS.length; k++) {
      const i = (k + round + 2) % PARSERS.length;
      const parser = PARSERS[i]!;
      const f = rate(frames, FRAME_PASSES, parser.frame);
      const s = rate(SMALL_BODIES, BODY_PASSES, parser.body);
      const b = rate(big, BIG_BODY_PASSES, parser.body);
      const h = i < CHECKED.length ? rate([hostile], BODY_PASSES, parser.body) : NaN;
      if (round < 0) continue; // warm-up
      samples[i]!.frames.push(f);
      samples[i]!.small.push(s);
      samples[i]!.big.push(b);
      if (i < CHECKED.length) hostileSamples[i]!.push(h);
    }
  }

  const rows: [string, string, string, string, string, string][] = [
    ["parser", "frames/s", `core at ${FEED_PEAK}/s`, "small bodies/s", "16 KB bodies/s", "16 KB of [ /s"],
  ];
  const figures: Record<string, unknown> = {};
  PARSERS.forEach((parser, i) => {
    const f = median(samples[i]!.frames);
    const s = median(samples[i]!.small);
    const b = median(samples[i]!.big);
    const h = i < CHECKED.length ? median(hostileSamples[i]!) : NaN;
    const fmt = (n: number) => (Number.isNaN(n) ? "-" : Math.round(n).toLocaleString("en-US"));
    rows.push([parser.name, fmt(f), `${((FEED_PEAK / f) * 100).toFixed(2)} %`, fmt(s), fmt(b), fmt(h)]);
    figures[parser.name] = {
      framesPerSec: Math.round(f),
      smallBodiesPerSec: Math.round(s),
      bigBodiesPerSec: Math.round(b),
      ...(Number.isNaN(h) ? {} : { nestedRefusalsPerSec: Math.round(h) }),
    };
  });

  console.log(
    `frame/body parsing benchmark (node ${process.version}; ${frames.length} frames, median of ${ROUNDS} rounds)`,
  );
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows)
    console.log(`  ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")}`);
  console.log(JSON.stringify({ feedPeakFramesPerSec: FEED_PEAK, rounds: ROUNDS, parsers: figures, sink }));
}

main();
