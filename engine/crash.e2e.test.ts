/**
 * Crash tests with the real engine process: its bundle, `dist/engine.mjs` with the flags of platform/components.ts
 * (spawnComponent), against real Redis and Postgres, killed with SIGKILL at random points while a generator streams a
 * realistic log into engine:input. The final state (the snapshot head a graceful stop leaves in Postgres) must equal,
 * hash for hash, a reference state that applied the same log in-process without ever crashing; every instruction must
 * be answered on engine:output, and every output there must be one the reference produced (replays re-emit, never
 * invent). Then two engines started at once: only one applies; the hot standby takes over when the leader is killed,
 * re-emitting nothing. Then a leader and a standby through a series of faults while the log streams (the leader
 * SIGKILLed again and again, a new standby started each time; the leader SIGSTOPped past its lease and resumed,
 * when it must exit without publishing; both killed at once): the same final state, every instruction answered
 * exactly once, no output id with two contents. Then engines killed in the middle of a replay: a snapshot, a long
 * tail after it, engines that restore the snapshot SIGKILLed one after another while they replay the tail, then a
 * hot standby that takes over mid-tail killed while it replays the rest, and the other standby taking over to the
 * end: the same checks.
 *
 * CRASH_SEED picks the logs and the kill points (printed on failure). Each engine's stdout is kept; on failure all
 * of it is written to .data/crash-e2e-<run>.log.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { EngineInput, EngineOutput, OutputOf } from "../contract/messages.ts";
import { MICROS_PER_USD } from "../contract/money.ts";
import { keyspace, type Keyspace } from "../contract/names.ts";
import { decodeOutputFields, encodeFields } from "../contract/stream-fields.ts";
import { createLogger } from "../platform/log.ts";
import { createTestDatabase, type TestDatabase } from "../platform/testing/test-database.ts";
import type { LogEntry } from "./core/apply.ts";
import { checkInvariants } from "./core/invariants.ts";
import { makeParams } from "./core/params.ts";
import { createState, type EngineState } from "./core/state.ts";
import { parseInputId } from "./core/step.ts";
import { LogGapError, runFollower } from "./runner/follower.ts";
import { FencedError } from "./runner/publisher.ts";
import { applyRaw } from "./runner/log-stream.ts";
import { decodeSnapshot } from "./snapshot/codec.ts";
import { hashSnapshot, stateHash } from "./snapshot/hash.ts";
import { PostgresSnapshotStore } from "./snapshot/postgres-store.ts";
import type { SnapshotStore } from "./snapshot/store.ts";
import { commandsArbitrary, toLog } from "./testing/random-log.ts";
import { REPO_ROOT, spawnComponent, until, type Child, type LogLine } from "../platform/testing/processes.ts";
import { seededRandom } from "../platform/testing/seeded-random.ts";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import { deleteKeysWithPrefix } from "../platform/testing/redis-keys.ts";

const REDIS_URL = TEST_REDIS_URL;
const SEED = Number(process.env.CRASH_SEED ?? 424242);
const ENTRIES = 2400;
const ROUNDS = 8;
/** Generator pacing: CHUNK entries per pipeline, then a pause; about as long as the kill rounds take. */
const CHUNK = 20;
const CHUNK_PAUSE_MS = 140;
const LEASE_TTL_MS = 1000;
/**
 * The replay test's log: a prefix that ends in a snapshot, then a tail long enough that replaying it takes seconds
 * (the random log applies at tens of thousands of entries a second), so a kill aimed at its first half never
 * lands after the end. Each kill lands in its band of the tail, and at least KILL_STEP entries past the last.
 */
const REPLAY_PREFIX = 2000;
const REPLAY_TAIL = 40_000;
const RESTORE_KILL_BANDS = [
  [0.05, 0.2],
  [0.2, 0.35],
] as const;
const TAKEOVER_KILL_BAND = [0.35, 0.5] as const;
const KILL_STEP = 2000;

let redis: Redis;
const prefixes: string[] = [];
const databases: TestDatabase[] = [];
const processes: Child[] = [];

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop("SIGKILL")));
  for (const prefix of prefixes) {
    await deleteKeysWithPrefix(redis, prefix);
  }
  redis.disconnect();
  for (const db of databases) await db.drop();
}, 30_000);

interface Run {
  readonly prefix: string;
  readonly keys: Keyspace;
  readonly db: TestDatabase;
  start(name: string): Child;
}

async function newRun(): Promise<Run> {
  const prefix = `test:${randomUUID()}:`;
  prefixes.push(prefix);
  const db = await createTestDatabase();
  databases.push(db);
  const env = {
    REDIS_URL,
    DATABASE_URL: db.url,
    KEY_PREFIX: prefix,
    SNAPSHOT_EVERY_MS: "200",
    ENGINE_LEASE_TTL_MS: String(LEASE_TTL_MS),
  };
  return {
    prefix,
    keys: keyspace(prefix),
    db,
    start: (name) => {
      const p = spawnComponent("engine", env, { name });
      processes.push(p);
      return p;
    },
  };
}

/** Runs `body`; if it throws, writes every engine's output to a file and adds where to the error. */
async function reporting(run: Run, engines: () => Child[], body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const dir = join(REPO_ROOT, ".data");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `crash-e2e-${run.prefix.replaceAll(":", "_")}log`);
    writeFileSync(
      file,
      engines()
        .flatMap((e) => e.raw)
        .join("\n"),
    );
    const tail = engines()
      .flatMap((e) => e.raw.slice(-8))
      .join("\n");
    if (err instanceof Error) err.message += `\n(CRASH_SEED=${SEED}; engine logs in ${file}; last lines:\n${tail})`;
    throw err;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isAfter(a: string, b: string): boolean {
  const x = parseInputId(a);
  const y = parseInputId(b);
  return x.ms > y.ms || (x.ms === y.ms && x.seq > y.seq);
}

/** Waits until the engines have published everything up to `lastId` (engine:published). */
async function untilPublished(keys: Keyspace, lastId: string, timeoutMs = 20_000): Promise<void> {
  await until(
    async () => ((await redis.get(keys.enginePublished)) === lastId ? true : undefined),
    timeoutMs,
    "engine:published to reach the last input",
  );
}

/** Nothing went wrong inside these engines: no error line (a crash, a lost lease, a snapshotter failure). */
function expectNoErrorLines(engines: readonly Child[]): void {
  for (const e of engines)
    expect(
      e.lines.filter((l) => l.level === "error"),
      `${e.name} error lines`,
    ).toEqual([]);
}

/** XADDs `messages` in order (paced), returning them with the ids Redis gave them: the test's own copy of the log. */
async function streamLog(
  keys: Keyspace,
  messages: readonly EngineInput[],
  chunk: number,
  pauseMs: number,
  signal?: AbortSignal,
): Promise<LogEntry[]> {
  const log: LogEntry[] = [];
  for (let i = 0; i < messages.length; i += chunk) {
    if (signal?.aborted) throw new Error("generator cancelled");
    // Stamped as sent, as the poller would: the engine judges a quote fresh by its exchange time.
    const batch = messages
      .slice(i, i + chunk)
      .map((m) => (m.type === "price_update" ? { ...m, exchangeTimeUs: `${Date.now()}000` } : m));
    const pipe = redis.pipeline();
    for (const m of batch) pipe.xadd(keys.input, "*", ...encodeFields(m));
    const results = (await pipe.exec()) ?? [];
    expect(results).toHaveLength(batch.length);
    results.forEach(([err, id], j) => {
      if (err) throw err;
      log.push({ id: id as string, message: batch[j]! });
    });
    if (pauseMs > 0 && i + chunk < messages.length) await sleep(pauseMs);
  }
  return log;
}

/** The reference: the same log applied in-process, through the same decode path as the engine, never crashing. */
function reference(log: readonly LogEntry[]): { state: EngineState; outputs: Map<string, EngineOutput> } {
  const state = createState(makeParams());
  const outputs = new Map<string, EngineOutput>();
  for (const { id, message } of log) {
    for (const out of applyRaw(state, [id, [...encodeFields(message)]])) {
      expect(outputs.has(out.id)).toBe(false);
      outputs.set(out.id, out);
    }
  }
  return { state, outputs };
}

async function readOutputs(keys: Keyspace): Promise<EngineOutput[]> {
  const all: EngineOutput[] = [];
  let from = "-";
  for (;;) {
    const page = (await redis.xrange(keys.output, from, "+", "COUNT", 5000)) as [string, string[]][];
    for (const [, fields] of page) {
      const decoded = decodeOutputFields(fields);
      if (!decoded.ok) throw new Error(`undecodable engine:output entry: ${decoded.reason}`);
      all.push(decoded.message);
    }
    if (page.length < 5000) return all;
    from = `(${page[page.length - 1]![0]}`;
  }
}

function responsesOf(outputs: readonly EngineOutput[]): OutputOf<"order_response">[] {
  return outputs.filter((o): o is OutputOf<"order_response"> => o.type === "order_response");
}

/** Every output on the stream is one the reference produced, byte for byte, and none the reference produced is missing. */
function expectOutputsMatchReference(outputs: readonly EngineOutput[], expected: Map<string, EngineOutput>): void {
  const seen = new Set<string>();
  for (const out of outputs) {
    const ref = expected.get(out.id);
    if (ref === undefined)
      throw new Error(`engine:output has ${out.id} (${out.type}), which the reference never produced`);
    expect(out).toEqual(ref);
    seen.add(out.id);
  }
  const missing = [...expected.keys()].filter((id) => !seen.has(id));
  expect(missing, "reference outputs missing from engine:output").toEqual([]);
}

/** Every instruction in the log got an order_response naming it, and one (user, request id) always got one answer. */
function expectEveryInstructionAnswered(log: readonly LogEntry[], outputs: readonly EngineOutput[]): void {
  const responses = responsesOf(outputs);
  const byInput = new Map<string, OutputOf<"order_response">[]>();
  for (const r of responses) byInput.set(r.inputId, [...(byInput.get(r.inputId) ?? []), r]);
  let instructions = 0;
  for (const { id, message } of log) {
    if (message.type !== "user_instruction") continue;
    instructions++;
    const answers = byInput.get(id) ?? [];
    if (answers.length === 0)
      throw new Error(`instruction ${id} (${message.userId}/${message.requestId}) got no order_response`);
    for (const a of answers) expect([a.userId, a.requestId]).toEqual([message.userId, message.requestId]);
  }
  expect(instructions).toBeGreaterThan(0);
  const byRequest = new Map<string, OutputOf<"order_response">["answer"][]>();
  for (const r of responses) {
    const key = `${r.userId}/${r.requestId}`;
    byRequest.set(key, [...(byRequest.get(key) ?? []), r.answer]);
  }
  for (const [key, answers] of byRequest) {
    for (const answer of answers) expect(answer, `answers to ${key}`).toEqual(answers[0]);
  }
}

/** Each instruction has exactly one answer (a replay may put the same one, same id, on the stream again). */
function expectOneAnswerEach(outputs: readonly EngineOutput[]): void {
  const answerIds = new Map<string, Set<string>>();
  for (const r of responsesOf(outputs)) answerIds.set(r.inputId, (answerIds.get(r.inputId) ?? new Set()).add(r.id));
  for (const [inputId, ids] of answerIds) expect([inputId, ids.size]).toEqual([inputId, 1]);
}

function buildMessages(seed: number, count: number): EngineInput[] {
  const samples = fc.sample(commandsArbitrary(200), { seed, numRuns: Math.ceil(count / 50) + 5 });
  const messages = toLog(samples.flat()).map((e) => e.message);
  if (messages.length < count) throw new Error(`generator gave only ${messages.length} messages`);
  return messages.slice(0, count);
}

const leaderLines = (engines: readonly Child[], event: string): LogLine[] =>
  engines.flatMap((e) => e.events(event).filter((l) => l.holder !== undefined));

describe("engine process: kill -9 and recover", () => {
  it("survives SIGKILL at random points while the log streams: same state hash as a reference that never crashed", async () => {
    // The engine's INITIAL_BALANCE_USD default (10000, unset here) must be the reference's makeParams() default.
    expect(makeParams().initialBalanceMicros).toBe(10_000 * MICROS_PER_USD);
    const run = await newRun();
    const engines: Child[] = [];
    await reporting(
      run,
      () => engines,
      async () => {
        const messages = buildMessages(SEED, ENTRIES);
        const rand = seededRandom(SEED);
        let streaming = true;
        const cancel = new AbortController();
        const generating = streamLog(run.keys, messages, CHUNK, CHUNK_PAUSE_MS, cancel.signal).finally(() => {
          streaming = false;
        });
        generating.catch(() => undefined);
        // If a round fails, the generator stops too (rather than write on after the keys are cleaned up).
        const stopGenerator = () => cancel.abort();
        onTestFinished(stopGenerator);

        const rounds: { delayMs: number; whileStreaming: boolean; restoredFrom: unknown }[] = [];
        for (let round = 0; round < ROUNDS; round++) {
          const engine = run.start(`engine-${round}`);
          engines.push(engine);
          // Kill a leader, not a standby: count the delay from when it holds the lease (it waits out the last
          // one's TTL first) and has replayed the log's tail, so the kill lands while it follows the log live,
          // while its snapshotter starts, or in a snapshot save; recovery is then exercised by the next engine.
          // (Replay takes milliseconds, but a CPU-starved one can outlast the shortest delay.)
          // Under load a snapshotter's start can outlast every delay, and then no engine would restore from a
          // snapshot at all: if none was saved in the first round, the second counts from its first one.
          await engine.waitFor("lease_acquired", 15_000);
          await engine.waitFor("replay_done", 15_000);
          if (round === 1 && engines.every((e) => e.events("snapshot_saved").length === 0))
            await engine.waitFor("snapshot_saved", 15_000);
          const delayMs = 300 + Math.floor(rand() * 1200);
          await sleep(delayMs);
          expect(engine.alive(), `engine-${round} was still running when it was to be killed`).toBe(true);
          const whileStreaming = streaming;
          expect(await engine.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
          rounds.push({
            delayMs,
            whileStreaming,
            restoredFrom: engine.events("restore_snapshot")[0]?.lastInputId ?? "fresh",
          });
        }

        const log = await generating;
        expect(log).toHaveLength(ENTRIES);
        for (let i = 1; i < log.length; i++) expect(isAfter(log[i]!.id, log[i - 1]!.id)).toBe(true);
        const lastId = log[log.length - 1]!.id;

        const final = run.start("engine-final");
        engines.push(final);
        await final.waitFor("replay_done", 15_000);
        await untilPublished(run.keys, lastId);
        // Live first: a stop between replay_done and engine_ready saves no snapshot.
        await final.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
        expect(await final.stop("SIGTERM")).toEqual({ code: 0, signal: null });

        // Nothing went wrong inside any engine (a crash, a lost lease, a snapshotter failure).
        expectNoErrorLines(engines);
        // Recovery was exercised: restores from a real snapshot, and replays of a non-empty tail.
        const restores = leaderLines(engines, "restore_snapshot");
        expect(restores.filter((l) => l.lastInputId !== "0-0").length).toBeGreaterThanOrEqual(1);
        const replays = leaderLines(engines, "replay_done");
        expect(replays).toHaveLength(ROUNDS + 1);
        expect(replays.filter((l) => typeof l.entries === "number" && l.entries > 0).length).toBeGreaterThanOrEqual(1);
        expect(leaderLines(engines, "lease_acquired")).toHaveLength(ROUNDS + 1);

        // The state: the snapshot head the graceful stop left equals the reference's, hash for hash.
        const ref = reference(log);
        checkInvariants(ref.state);
        const loaded = await new PostgresSnapshotStore(run.db.db).load();
        expect(loaded).not.toBeNull();
        expect(loaded!.head.lastInputId).toBe(lastId);
        const restored = decodeSnapshot(loaded!.bytes);
        const refHash = stateHash(ref.state);
        expect(stateHash(restored)).toBe(refHash);
        expect(loaded!.head.stateHash).toBe(refHash);
        // The comparison can fail: one entry less in the reference gives another hash.
        expect(stateHash(reference(log.slice(0, -1)).state)).not.toBe(loaded!.head.stateHash);

        // The outputs: every instruction answered, replays re-emit identical outputs and invent none.
        const outputs = await readOutputs(run.keys);
        expectEveryInstructionAnswered(log, outputs);
        expectOutputsMatchReference(outputs, ref.outputs);

        console.log(
          JSON.stringify({
            test: "crash_rounds",
            seed: SEED,
            entries: log.length,
            outputs: outputs.length,
            distinctOutputs: ref.outputs.size,
            replayedDuplicates: outputs.length - ref.outputs.size,
            snapshotRestores: restores.length,
            rounds,
          }),
        );
      },
    );
  }, 120_000);
});

describe("engine process: two engines at once", () => {
  it("lets only one apply; the standby takes over when the leader is killed", async () => {
    const run = await newRun();
    const engines: Child[] = [];
    await reporting(
      run,
      () => engines,
      async () => {
        const a = run.start("engine-a");
        const b = run.start("engine-b");
        engines.push(a, b);
        const role = (e: Child) =>
          e.waitFor((l) => l.event === "lease_acquired" || l.event === "standby", 15_000, "lease_acquired or standby");
        await Promise.all([role(a), role(b)]);
        const leaders = engines.filter((e) => e.events("lease_acquired").length > 0);
        expect(leaders).toHaveLength(1);
        const leader = leaders[0]!;
        const standby = leader === a ? b : a;
        expect(standby.events("standby")).toHaveLength(1);

        const log: LogEntry[] = [];
        const send = async (messages: EngineInput[]) =>
          log.push(...(await streamLog(run.keys, messages, messages.length, 0)));
        const instruction = (
          userId: string,
          requestId: string,
          body: Extract<EngineInput, { type: "user_instruction" }>["instruction"],
        ): EngineInput => ({ type: "user_instruction", userId, requestId, instruction: body });
        const responsesTo = async (inputId: string) =>
          responsesOf(await readOutputs(run.keys)).filter((r) => r.inputId === inputId);
        const answered = (inputIds: string[]) =>
          until(
            async () => {
              const responses = responsesOf(await readOutputs(run.keys));
              return inputIds.every((id) => responses.some((r) => r.inputId === id)) ? responses : undefined;
            },
            15_000,
            `answers to ${inputIds.join(", ")}`,
          );

        await send([
          {
            type: "price_update",
            market: "ETH_USDC_PERP",
            bid: "2000.00",
            ask: "2000.10",
            exchangeTimeUs: `${Date.now()}000`, // the exchange's clock: quotes are judged fresh by it
            source: "sim",
          },
          instruction("alice", "a1", { kind: "create_account" }),
          instruction("bob", "b1", { kind: "create_account" }),
          instruction("alice", "a2", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 }),
          instruction("bob", "b2", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "0.5" }),
          instruction("carol", "c1", { kind: "open_trade", asset: "ETH", side: "short", margin: "100", leverage: 5 }),
        ]);
        const firstInstructions = log.filter((e) => e.message.type === "user_instruction").map((e) => e.id);
        await answered(firstInstructions);
        // Longer than the lease TTL: the standby polled several times meanwhile and must still be waiting.
        await sleep(LEASE_TTL_MS * 1.5);
        expect(standby.alive()).toBe(true);
        expect(standby.events("lease_acquired")).toEqual([]);
        // A hot standby restores once at start and then follows the published log: it replays nothing until it leads.
        expect(standby.events("restore_snapshot").length + standby.events("restore_fresh").length).toBe(1);
        expect(standby.events("replay_start")).toEqual([]);
        const before = await readOutputs(run.keys);
        // No replay has happened yet: every output is on the stream exactly once, each instruction answered once.
        expect(new Set(before.map((o) => o.id)).size).toBe(before.length);
        for (const id of firstInstructions) expect(responsesOf(before).filter((r) => r.inputId === id)).toHaveLength(1);

        // A second batch, and the leader dies as soon as it is answered: the standby has (or soon has) applied it,
        // so the takeover re-emits nothing.
        await send([
          {
            type: "price_update",
            market: "ETH_USDC_PERP",
            bid: "2010.00",
            ask: "2010.10",
            exchangeTimeUs: `${Date.now()}000`,
            source: "sim",
          },
          instruction("bob", "b3", { kind: "spot_order", asset: "ETH", side: "sell", quantity: "0.25" }),
          instruction("alice", "a4", { kind: "open_trade", asset: "ETH", side: "short", margin: "50", leverage: 3 }),
        ]);
        await answered(log.slice(-2).map((e) => e.id));
        const publishedAtKill = await redis.get(run.keys.enginePublished);
        expect(await leader.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
        const takeover = await standby.waitFor("lease_acquired", 15_000);
        expect(Number(takeover.fence)).toBeGreaterThan(Number(leader.events("lease_acquired")[0]!.fence));
        // It led from where the dead leader's outputs ended, with nothing left to replay.
        expect((await standby.waitFor("takeover", 15_000)).fromInputId).toBe(publishedAtKill);
        const replayDone = await standby.waitFor("replay_done", 15_000);
        expect(replayDone.entries).toBe(0);

        await send([
          instruction("alice", "a3", { kind: "close_trade", tradeId: "T0-1" }),
          instruction("dave", "d1", { kind: "create_account" }),
        ]);
        const lastInstructions = log.slice(-2).map((e) => e.id);
        await answered(lastInstructions);
        for (const id of lastInstructions) expect(await responsesTo(id)).toHaveLength(1);
        const lastId = log[log.length - 1]!.id;
        await untilPublished(run.keys, lastId, 15_000);

        expect(await standby.stop("SIGTERM")).toEqual({ code: 0, signal: null });
        expectNoErrorLines(engines);

        // Every output on the stream exactly once: the standby took over without replaying anything.
        const outputs = await readOutputs(run.keys);
        expect(new Set(outputs.map((o) => o.id)).size).toBe(outputs.length);
        const ref = reference(log);
        console.log(
          JSON.stringify({
            test: "two_engines",
            entries: log.length,
            takeoverFrom: publishedAtKill,
            outputs: outputs.length,
          }),
        );
        expectEveryInstructionAnswered(log, outputs);
        expectOutputsMatchReference(outputs, ref.outputs);
        const loaded = await new PostgresSnapshotStore(run.db.db).load();
        expect(loaded!.head.lastInputId).toBe(lastId);
        expect(loaded!.head.stateHash).toBe(stateHash(ref.state));
        expect(stateHash(decodeSnapshot(loaded!.bytes))).toBe(stateHash(ref.state));
      },
    );
  }, 120_000);
});

describe("engine process: leader and hot standby", () => {
  it("keeps one state through repeated SIGKILLs of the leader, a SIGSTOP past its lease, and both killed at once", async () => {
    const run = await newRun();
    const engines: Child[] = [];
    await reporting(
      run,
      () => engines,
      async () => {
        const messages = buildMessages(SEED + 1, ENTRIES);
        const rand = seededRandom(SEED + 1);
        const cancel = new AbortController();
        onTestFinished(() => cancel.abort());
        // Paced to last about as long as the rounds (each waits for a new engine's restore).
        const generating = streamLog(run.keys, messages, CHUNK, CHUNK_PAUSE_MS * 2, cancel.signal);
        generating.catch(() => undefined);

        // As npm start's supervisor does: a new engine for each that died, which comes up as the standby.
        const ready = (e: Child, role: "leader" | "standby") =>
          e.waitFor((l) => l.event === "engine_ready" && l.role === role, 30_000, `engine_ready as ${role}`);
        const startEngine = () => {
          const e = run.start(`engine-${engines.length}`);
          engines.push(e);
          return e;
        };
        const pair = async (): Promise<{ leader: Child; standby: Child }> => {
          const alive = engines.filter((e) => e.alive());
          expect(alive).toHaveLength(2);
          const lastRole = (e: Child) => e.events("engine_ready").at(-1)?.role;
          await until(
            () => Promise.resolve(alive.every((e) => lastRole(e) !== undefined) ? true : undefined),
            30_000,
            "both engines ready",
          );
          const leader = alive.find((e) => lastRole(e) === "leader");
          const standby = alive.find((e) => lastRole(e) === "standby");
          expect(leader && standby, "one leader and one standby").toBeTruthy();
          return { leader: leader!, standby: standby! };
        };
        await ready(startEngine(), "leader");
        await ready(startEngine(), "standby");

        const rounds: { kind: string; delayMs: number; takeoverFrom?: unknown }[] = [];
        const plan = ["kill", "kill", "kill", "stop", "kill", "both", "kill"] as const;
        const deposed: Child[] = [];
        for (const kind of plan) {
          const delayMs = 300 + Math.floor(rand() * 900);
          await sleep(delayMs);
          const { leader, standby } = await pair();
          if (kind === "both") {
            await Promise.all([leader.stop("SIGKILL"), standby.stop("SIGKILL")]);
            // The new pair starts once the dead leader's lease has lapsed, so one of them recovers from snapshot +
            // log as a fresh leader. (Started sooner, both come up as standbys and one takes over: a seventh
            // takeover, also right, but not the case this round is for.)
            await until(
              async () => ((await redis.exists(run.keys.engineLease)) === 0 ? true : undefined),
              10_000,
              "the dead leader's lease to lapse",
            );
            const [a, b] = [startEngine(), startEngine()];
            await Promise.all([a.waitFor("engine_ready", 30_000), b.waitFor("engine_ready", 30_000)]);
            rounds.push({ kind, delayMs });
            continue;
          }
          if (kind === "kill") {
            expect(await leader.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
          } else {
            leader.proc.kill("SIGSTOP"); // paused past its lease: deposed
          }
          const takeover = await standby.waitFor("takeover", 30_000);
          await ready(standby, "leader");
          if (kind === "stop") {
            leader.proc.kill("SIGCONT");
            // It resumes believing it leads: its next publish or renewal is refused and it exits.
            expect((await leader.exited).code).toBe(1);
            expect(leader.events("lease_lost")).toHaveLength(1);
            expect(leader.events("crash")).toEqual([]);
            deposed.push(leader);
          }
          await ready(startEngine(), "standby");
          rounds.push({ kind, delayMs, takeoverFrom: takeover.fromInputId });
        }

        const log = await generating;
        expect(log).toHaveLength(ENTRIES);
        const lastId = log[log.length - 1]!.id;
        await untilPublished(run.keys, lastId);
        const { leader, standby } = await pair();
        expect(await standby.stop("SIGTERM")).toEqual({ code: 0, signal: null });
        expect(await leader.stop("SIGTERM")).toEqual({ code: 0, signal: null });

        // Only the deposed engine says anything went wrong.
        expectNoErrorLines(engines.filter((e) => !deposed.includes(e)));
        // Six takeovers by a standby (each kill and the stop), and one recovery from snapshot + log after both died.
        expect(engines.flatMap((e) => e.events("takeover"))).toHaveLength(plan.length - 1);

        const ref = reference(log);
        const outputs = await readOutputs(run.keys);
        expectEveryInstructionAnswered(log, outputs);
        // No output id with two contents, none the reference lacks, none missing.
        expectOutputsMatchReference(outputs, ref.outputs);
        expectOneAnswerEach(outputs);
        const loaded = await new PostgresSnapshotStore(run.db.db).load();
        expect(loaded!.head.lastInputId).toBe(lastId);
        expect(stateHash(decodeSnapshot(loaded!.bytes))).toBe(stateHash(ref.state));
        console.log(
          JSON.stringify({
            test: "hot_standby_rounds",
            seed: SEED + 1,
            entries: log.length,
            outputs: outputs.length,
            replayedDuplicates: outputs.length - ref.outputs.size,
            rounds,
          }),
        );
      },
    );
  }, 240_000);
});

describe("engine process: killed while it replays", () => {
  it("survives SIGKILL in the middle of a long replay, again and again, and a takeover killed mid-replay: same state hash", async () => {
    const run = await newRun();
    const engines: Child[] = [];
    await reporting(
      run,
      () => engines,
      async () => {
        const start = (name: string) => {
          const e = run.start(name);
          engines.push(e);
          return e;
        };
        const messages = buildMessages(SEED + 2, REPLAY_PREFIX + REPLAY_TAIL);
        const rand = seededRandom(SEED + 2);
        const published = async () => (await redis.get(run.keys.enginePublished)) ?? "0-0";
        const leaseLapsed = () =>
          until(
            async () => ((await redis.exists(run.keys.engineLease)) === 0 ? true : undefined),
            10_000,
            "the dead leader's lease to lapse",
          );

        // A snapshot to restore from: an engine applies the first part of the log and stops cleanly, saving it.
        const log = await streamLog(run.keys, messages.slice(0, REPLAY_PREFIX), 1000, 0);
        const snapshotAt = log[log.length - 1]!.id;
        const first = start("engine-snapshot");
        await until(
          async () => ((await published()) === snapshotAt ? true : undefined),
          30_000,
          "the first part of the log to be published",
        );
        // Live, so its stop saves a final snapshot (one stopped before its replay is done saves none).
        await first.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
        expect(await first.stop("SIGTERM")).toEqual({ code: 0, signal: null });
        const store = new PostgresSnapshotStore(run.db.db);
        expect((await store.load())?.head.lastInputId).toBe(snapshotAt);
        // The long tail, all of it in the log before any engine replays it.
        log.push(...(await streamLog(run.keys, messages.slice(REPLAY_PREFIX), 1000, 0)));
        expect(log).toHaveLength(REPLAY_PREFIX + REPLAY_TAIL);
        const lastId = log[log.length - 1]!.id;
        const position = new Map(log.map((e, i) => [e.id, i]));
        const positionOf = (id: string) => {
          const at = position.get(id);
          if (at === undefined) throw new Error(`engine:published is ${id}, which is not an entry of the log`);
          return at;
        };

        /**
         * The kill point comes from the engine's progress, not from a delay: once it has logged replay_start, the
         * published cursor, which its replay moves with every slice it publishes (replay_progress comes once a
         * second at most, too coarse for a fast machine), passes a seeded position within `band` of the tail (in its
         * first half, so much of it is left to replay), and it is SIGKILLed there. The position is also past the
         * cursor this engine found (where the last kill left it), so only this engine's progress can reach it; the
         * cursor never moves back meanwhile (a replay publishes nothing of a batch that ends at or below it).
         */
        const killMidReplay = async (engine: Child, band: readonly [number, number]) => {
          const cursorBefore = positionOf(await published());
          const planned = REPLAY_PREFIX + Math.floor(REPLAY_TAIL * (band[0] + rand() * (band[1] - band[0])));
          const target = Math.max(planned, cursorBefore + KILL_STEP);
          const replayStart = await engine.waitFor("replay_start", 30_000);
          const reached = await until(
            async () => {
              if (!engine.alive()) throw new Error(`${engine.name} exited before it published through entry ${target}`);
              const cursor = await published();
              expect(positionOf(cursor), "engine:published moved back").toBeGreaterThanOrEqual(cursorBefore);
              return positionOf(cursor) >= target ? cursor : undefined;
            },
            60_000,
            `${engine.name} to publish through entry ${target}`,
            5,
          );
          expect(engine.alive(), `${engine.name} was still running when it was to be killed`).toBe(true);
          expect(await engine.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
          // Killed in the middle of its replay: it never logged the end of it (checked once all it wrote is read:
          // the exit can come before the last of its stdout), and the log's end was not published.
          await finished(engine.proc.stdout);
          expect(engine.events("replay_done"), `${engine.name} logged replay_done`).toEqual([]);
          const cursorAtKill = await published();
          expect(positionOf(cursorAtKill)).toBeLessThan(log.length - 1);
          return {
            engine: engine.name,
            from: replayStart.from,
            target,
            reached: positionOf(reached),
            atKill: positionOf(cursorAtKill),
          };
        };

        // Killed again and again while replaying from the snapshot. No snapshot is taken during a replay (the
        // snapshotting follower starts once the leader is live), so each next engine restores the same one and
        // replays the same tail again, publishing only from where the one before it stopped.
        const rounds: Awaited<ReturnType<typeof killMidReplay>>[] = [];
        for (const [i, band] of RESTORE_KILL_BANDS.entries()) {
          await leaseLapsed();
          const engine = start(`engine-restore-${i}`);
          rounds.push(await killMidReplay(engine, band));
          expect(engine.events("restore_snapshot")[0]?.lastInputId).toBe(snapshotAt);
          expect(rounds[rounds.length - 1]!.from).toBe(snapshotAt);
        }
        expect((await store.load())?.head.lastInputId).toBe(snapshotAt);

        // Then a takeover killed mid-replay. Two engines come up as hot standbys behind a lease the test holds (a
        // leader that is no engine, so both stand by however long their start takes) and follow the cursor the last
        // kill left in the middle of the tail. When the lease is let go, one takes over and replays the rest of
        // the log (read from Redis: there is no prefetch after a takeover) and is killed mid-replay; the other
        // takes over from the cursor that one published (a kill may leave it in the middle of a batch) and leads to
        // the end.
        await leaseLapsed();
        await redis.set(run.keys.engineLease, "replay-kill-test:0", "PX", 60_000);
        const pair = [start("engine-standby-a"), start("engine-standby-b")];
        await Promise.all(
          pair.map((e) =>
            e.waitFor((l) => l.event === "engine_ready" && l.role === "standby", 30_000, "engine_ready as standby"),
          ),
        );
        const cursorBeforeTakeover = await published();
        await redis.del(run.keys.engineLease);
        const leader = await until(
          () => Promise.resolve(pair.find((e) => e.events("takeover").length > 0)),
          15_000,
          "a takeover",
        );
        const last = pair.find((e) => e !== leader)!;
        expect(leader.events("takeover")[0]!.fromInputId).toBe(cursorBeforeTakeover);
        rounds.push(await killMidReplay(leader, TAKEOVER_KILL_BAND));
        expect(rounds[rounds.length - 1]!.from).toBe(cursorBeforeTakeover);

        // The last engine takes over, replays the rest and follows the log live; a clean stop saves its state.
        await last.waitFor("takeover", 15_000);
        const lastReplay = await last.waitFor("replay_done", 60_000);
        await untilPublished(run.keys, lastId);
        // Live before its stop, so that the stop saves a final snapshot (one stopped at the end of its replay, before
        // it is ready, saves none).
        await last.waitFor((l) => l.event === "engine_ready" && l.role === "leader", 30_000);
        expect(await last.stop("SIGTERM")).toEqual({ code: 0, signal: null });

        expectNoErrorLines(engines);
        expect(engines.flatMap((e) => e.events("takeover"))).toHaveLength(2);

        // The state: the snapshot head the last engine's clean stop left equals the reference's, hash for hash.
        const ref = reference(log);
        const loaded = await store.load();
        expect(loaded!.head.lastInputId).toBe(lastId);
        expect(loaded!.head.stateHash).toBe(stateHash(ref.state));
        expect(stateHash(decodeSnapshot(loaded!.bytes))).toBe(stateHash(ref.state));

        // The outputs: each the same as the reference's, none invented, none missing, and every instruction answered
        // exactly once. A replay re-emits at most the part of one batch that straddles the cursor it found.
        const outputs = await readOutputs(run.keys);
        expectEveryInstructionAnswered(log, outputs);
        expectOutputsMatchReference(outputs, ref.outputs);
        expectOneAnswerEach(outputs);
        console.log(
          JSON.stringify({
            test: "replay_kills",
            seed: SEED + 2,
            entries: log.length,
            snapshotAt: positionOf(snapshotAt),
            outputs: outputs.length,
            replayedDuplicates: outputs.length - ref.outputs.size,
            rounds,
            lastReplay: { entries: lastReplay.entries, ms: lastReplay.ms },
          }),
        );
      },
    );
  }, 240_000);
});

describe("engine process: the newest snapshot corrupt", () => {
  it("restores the snapshot before it and replays the log kept back to it; its snapshotter saves again", async () => {
    const run = await newRun();
    const engines: Child[] = [];
    await reporting(
      run,
      () => engines,
      async () => {
        const messages = buildMessages(SEED + 1, 900);
        const first = run.start("first");
        engines.push(first);
        await first.waitFor("engine_ready", 30_000);
        const log = await streamLog(run.keys, messages.slice(0, 300), CHUNK, 40);
        await untilPublished(run.keys, log.at(-1)!.id);
        // A trim after a snapshot: the log no longer starts at its beginning, so only a snapshot can restore. A save
        // trims below the one before it, so more entries follow a first snapshot: on a slow start that one may come
        // only once everything streamed so far is applied, and a state that stays the same is not saved again.
        await first.waitFor("snapshot_saved", 30_000);
        log.push(...(await streamLog(run.keys, messages.slice(300, 600), CHUNK, 40)));
        await untilPublished(run.keys, log.at(-1)!.id);
        await first.waitFor((l) => l.event === "snapshot_saved" && Number(l.trimmed) > 0, 30_000, "a trim");
        expect(await first.stop("SIGTERM")).toEqual({ code: 0, signal: null });
        const head = await run.db.db.query<{ generation: number; lastInputId: string }>(
          `SELECT (snapshot_data->>'generation')::int AS generation, snapshot_data->>'lastInputId' AS "lastInputId"
           FROM engine_snapshots`,
        );
        expect(head.rows[0]!.lastInputId).toBe(log.at(-1)!.id); // the final snapshot, saved on the stop
        // One byte of the newest snapshot changed at rest.
        await run.db.db.query(
          `UPDATE engine_snapshot_chunks SET data = translate(encode(set_byte(decode(data, 'base64'), 40,
             (get_byte(decode(data, 'base64'), 40) + 1) % 256), 'base64'), E'\\n', '') WHERE generation = $1 AND idx = 0`,
          [head.rows[0]!.generation],
        );

        const second = run.start("second");
        engines.push(second);
        await second.waitFor("engine_ready", 30_000);
        const replayed = await second.waitFor("replay_done");
        expect(Number(replayed.entries)).toBeGreaterThan(0); // from the previous snapshot's cursor
        log.push(...(await streamLog(run.keys, messages.slice(600), CHUNK, 40)));
        const lastId = log.at(-1)!.id;
        await untilPublished(run.keys, lastId);
        // The snapshotter thread restored past the same corrupt snapshot, and saves.
        await second.waitFor(
          (l) => l.event === "snapshot_saved" && l.lastInputId === lastId,
          30_000,
          "a snapshot of the last entry",
        );
        expect(await second.stop("SIGTERM")).toEqual({ code: 0, signal: null });
        const fallbacks = second.events("restore_fallback");
        expect(fallbacks.map((l) => l.role ?? "main")).toEqual(expect.arrayContaining(["main", "snapshotter"]));
        for (const l of fallbacks) expect(l.reason).toMatch(/is corrupt: SHA-256/);
        // Its first save deleted the corrupt snapshot rather than keep it as the previous; no later one deleted any.
        const saves = second.events("snapshot_saved");
        expect(saves.map((l) => l.deletedUnusableGeneration)).toEqual([
          head.rows[0]!.generation,
          ...saves.slice(1).map(() => undefined),
        ]);
        expect(second.events("snapshotter_crashed")).toEqual([]);
        expect(second.lines.filter((l) => l.level === "error" && l.event !== "restore_fallback")).toEqual([]);

        const outputs = await readOutputs(run.keys);
        const ref = reference(log);
        expectEveryInstructionAnswered(log, outputs);
        expectOutputsMatchReference(outputs, ref.outputs);
        const loaded = await new PostgresSnapshotStore(run.db.db).load();
        expect(loaded!.head.lastInputId).toBe(lastId);
        expect(stateHash(decodeSnapshot(loaded!.bytes))).toBe(stateHash(ref.state));
        await expect(new PostgresSnapshotStore(run.db.db).load("previous")).resolves.not.toBeNull();
      },
    );
  }, 120_000);
});

describe("snapshotting follower behind a foreign trim", () => {
  // A fenced-out engine's follower thread keeps running while its leader's main thread stalls past the lease TTL;
  // it and the new leader's follower both follow engine:published and each trims the log below its own snapshots.
  // The one that lags may read (cursor, published] with a hole in it: it must stop, not apply the rest and save a
  // wrong state as the snapshot head.
  const quiet = createLogger("engine-test", { level: "error" });
  const recordingStore = (
    saved: { lastInputId: string; stateHash: string }[],
    onSave: (lastInputId: string) => void,
  ): Pick<SnapshotStore, "save" | "load"> => ({
    load: () => Promise.resolve(null),
    save: (bytes, head) => {
      expect(hashSnapshot(bytes)).toBe(head.stateHash);
      saved.push({ lastInputId: head.lastInputId, stateHash: head.stateHash });
      onSave(head.lastInputId);
      return Promise.resolve({
        writeMs: 0,
        head: { ...head, bytes: bytes.length, generation: saved.length, chunks: 1 },
        skipped: false,
      });
    },
  });
  const freshKeys = () => {
    const prefix = `test:${randomUUID()}:`;
    prefixes.push(prefix);
    return keyspace(prefix);
  };

  it("catches up to the published cursor from the middle of the log (control)", async () => {
    const keys = freshKeys();
    const log = await streamLog(keys, buildMessages(SEED, 60), 60, 0);
    const last = log[log.length - 1]!.id;
    await redis.set(keys.enginePublished, last);
    const stop = new AbortController();
    const saved: { lastInputId: string; stateHash: string }[] = [];
    const store = recordingStore(saved, (id) => id === last && stop.abort());
    await redis.set(keys.engineLease, "leader:1");
    await runFollower(
      {
        redis,
        keys,
        log: quiet,
        state: reference(log.slice(0, 20)).state,
        store,
        leaseValue: "leader:1",
        everyMs: 0,
        pollMs: 5,
      },
      stop.signal,
    );
    expect(saved.at(-1)).toEqual({ lastInputId: last, stateHash: stateHash(reference(log).state) });
  });

  it("may not trim once its leader's lease is gone: a deposed engine's follower stops", async () => {
    const keys = freshKeys();
    const log = await streamLog(keys, buildMessages(SEED, 30), 30, 0);
    // Published in two steps: the first snapshot (at entry 15) trims nothing, the second would trim below it.
    await redis.set(keys.enginePublished, log[14]!.id);
    await redis.set(keys.engineLease, "new-leader:2"); // the lease moved on
    const saved: { lastInputId: string; stateHash: string }[] = [];
    const outcome = await runFollower(
      {
        redis,
        keys,
        log: quiet,
        state: reference([]).state,
        store: recordingStore(saved, (id) => {
          if (id === log[14]!.id) void redis.set(keys.enginePublished, log[log.length - 1]!.id);
        }),
        leaseValue: "old-leader:1",
        everyMs: 0,
        pollMs: 5,
      },
      new AbortController().signal,
    ).then(
      () => "ran on",
      (err: unknown) => err,
    );
    expect(outcome).toBeInstanceOf(FencedError);
    expect(saved.map((s) => s.lastInputId)).toEqual([log[14]!.id, log[29]!.id]);
    expect(await redis.xlen(keys.input)).toBe(30); // nothing trimmed
  });

  it("ends cleanly when a trim is refused after its stop was requested: its leader handed the lease over", async () => {
    // A leader stopping cleanly releases the lease while its follower may be saving a snapshot (it is, for much of
    // the time, with a large state or while it catches up after a long replay): the trim that follows is refused,
    // and the follower must end with its final snapshot, not crash.
    const keys = freshKeys();
    const log = await streamLog(keys, buildMessages(SEED, 30), 30, 0);
    // Published in two steps: the first snapshot (at entry 15) trims nothing, the second would trim below it.
    await redis.set(keys.enginePublished, log[14]!.id);
    await redis.set(keys.engineLease, "leader:1");
    const stop = new AbortController();
    const saved: { lastInputId: string; stateHash: string }[] = [];
    const outcome = await runFollower(
      {
        redis,
        keys,
        log: quiet,
        state: reference([]).state,
        store: recordingStore(saved, (id) => {
          if (id === log[14]!.id) {
            void redis.set(keys.enginePublished, log[log.length - 1]!.id);
          } else {
            // As main.ts stops: the follower is asked to stop, then the lease is released, while this one saves.
            stop.abort();
            void redis.del(keys.engineLease);
          }
        }),
        leaseValue: "leader:1",
        everyMs: 0,
        pollMs: 5,
      },
      stop.signal,
    ).then(
      () => "stopped",
      (err: unknown) => err,
    );
    expect(outcome).toBe("stopped");
    expect(saved.map((s) => s.lastInputId)).toEqual([log[14]!.id, log[29]!.id]);
    expect(await redis.xlen(keys.input)).toBe(30); // nothing trimmed
  });

  it("stops with LogGapError instead of snapshotting a state that skipped trimmed entries", async () => {
    const keys = freshKeys();
    const log = await streamLog(keys, buildMessages(SEED, 60), 60, 0);
    await redis.set(keys.enginePublished, log[log.length - 1]!.id);
    // Another follower saved a snapshot at entry 40 and trimmed below it; this one is still at entry 20.
    expect(await redis.xtrim(keys.input, "MINID", log[40]!.id)).toBe(40);
    const saved: { lastInputId: string; stateHash: string }[] = [];
    const state = reference(log.slice(0, 20)).state;
    // A follower that (wrongly) carries on saves at once (everyMs 0): stop it there, or after a backstop.
    const stop = new AbortController();
    const backstop = setTimeout(() => stop.abort(), 5000);
    const store = recordingStore(saved, () => stop.abort());
    await redis.set(keys.engineLease, "leader:1");
    const outcome = await runFollower(
      { redis, keys, log: quiet, state, store, leaseValue: "leader:1", everyMs: 0, pollMs: 5 },
      stop.signal,
    ).then(
      () => "ran on",
      (err: unknown) => err,
    );
    clearTimeout(backstop);
    expect(saved, "snapshots saved after skipping trimmed entries").toEqual([]);
    expect(outcome).toBeInstanceOf(LogGapError);
    expect(state.lastInputId).toBe(log[19]!.id);
  });
});
