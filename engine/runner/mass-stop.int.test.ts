// A price that fires thousands of stops at once: one step too large for one publish call. The leader is fenced
// between two parts of it, the next leader publishes the whole step again, and the real worker and stream end with
// each output once: every close one row, every event stored and delivered once, no summary inside a user's step.
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { EngineInput, EngineOutput, Instruction, PrivateOutput } from "../../contract/messages.ts";
import { decodeOutputFields, encodeFields } from "../../contract/stream-fields.ts";
import { createLogger } from "../../platform/log.ts";
import { migrate } from "../../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";
import {
  balancesEvent,
  connectAs,
  fanOutEvents,
  startTestStream,
  storeEvents,
  type TestClient,
  type TestStream,
} from "../../stream/testing/stream-fixture.ts";
import { readEventsAfter } from "../../worker/events.ts";
import { groupBacklog, runWorker } from "../../worker/worker.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { recordPublishCalls } from "../testing/publish-calls.ts";
import { runLeader } from "./leader.ts";
import { EngineLease } from "./lease.ts";

const log = createLogger("engine-test", { level: "error" });
/** Each with a stop that the tick fires: ~740 bytes of outputs a stop, so the step goes in two parts. */
const USERS = 2_000;
let t: TestStream;
let pg: TestDatabase;

beforeAll(async () => {
  t = await startTestStream();
  pg = await createTestDatabase();
  await migrate(pg.db, log);
});

afterAll(async () => {
  await t.close();
  await pg.drop();
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it("a leader fenced inside a mass stop's publish: its successor re-emits the step, consumers keep each output once", async () => {
  const { keys, redis } = t;
  // Ids of one length (a ms each, seq 0): every output's size, so where the publish splits, is the same every run.
  const baseMs = Date.now();
  let at = 0;
  const setup = redis.pipeline();
  const add = (message: EngineInput) => void setup.xadd(keys.input, `${baseMs + at++}-0`, ...encodeFields(message));
  const instruct = (userId: string, instruction: Instruction) =>
    add({ type: "user_instruction", userId, requestId: `r${at}`, instruction });
  const users = Array.from({ length: USERS }, (_, i) => `stop-${i}`);
  for (const u of users) instruct(u, { kind: "create_account" });
  add(ethAt("2000", baseMs + at));
  for (const u of users)
    instruct(u, { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10, stopLoss: "1950" });
  const setupEnd = `${baseMs + at - 1}-0`;
  await setup.exec();

  const stopWorker = new AbortController();
  const [workerReader, workerWriter] = [new Redis(TEST_REDIS_URL), new Redis(TEST_REDIS_URL)];
  const working = runWorker(
    { reader: workerReader, writer: workerWriter, db: pg.db, keys, log, consumer: "w1", blockMs: 50 },
    stopWorker.signal,
  );
  const caughtUp = () =>
    until("the worker", async () => {
      const backlog = await groupBacklog(redis, keys);
      return backlog?.lag === 0 && backlog.pending === 0 ? true : undefined;
    });
  const clients: TestClient[] = [];
  const stopping: AbortController[] = [];
  const leaderReader = new Redis(TEST_REDIS_URL);
  // Leader a is fenced (another engine takes the lease) once a part of the step that ends inside a user's step is
  // out: that user's close is out, the balance change of the same step is not.
  let fencedAfter: number | undefined;
  const a = recordPublishCalls(TEST_REDIS_URL, keys, async (index, call) => {
    if (fencedAfter !== undefined || call.last !== "0" || call.lastMore !== "1") return;
    fencedAfter = index;
    await redis.set(keys.engineLease, "thief:0", "PX", 60_000);
  });
  try {
    const leaseA = new EngineLease(redis, keys, "a", 60_000, log);
    expect(await leaseA.tryAcquire()).toBe(true);
    const stopA = new AbortController();
    stopping.push(stopA);
    const leadingA = runLeader(
      {
        reader: leaderReader,
        writer: a.writer,
        keys,
        log,
        lease: leaseA,
        state: createState(makeParams()),
        blockMs: 20,
      },
      stopA.signal,
    );
    await until("the setup published", async () =>
      (await redis.get(keys.enginePublished)) === setupEnd ? true : undefined,
    );
    await caughtUp();
    const marks = await redis.mget(users.map((u) => keys.eventsSeqKey(u)));
    const seqBefore = new Map(users.map((u, i) => [u, Number(marks[i])]));

    const tickMs = baseMs + at;
    const tick = `${tickMs}-0`;
    await redis.xadd(keys.input, tick, ...encodeFields(ethAt("1900", tickMs)));
    const endA = await Promise.race([leadingA, sleep(20_000).then(() => "still leading")]);
    expect(endA).toBe("lease_lost");
    expect(fencedAfter, "no part of the step ended inside a user's step: change USERS so that one does").toBeDefined();
    expect(await redis.get(keys.enginePublished)).toBe(setupEnd);

    // What a left out: the step's first part, ending with a close whose step has the user's balances after it.
    const prefix = await stepOutputs(tick);
    const straddling = prefix.at(-1) as PrivateOutput;
    expect(straddling.type).toBe("closed_order");
    const outIn = (u: string) => prefix.filter((o) => "userId" in o && o.userId === u).length;
    const allOut = users.find((u) => outIn(u) === 2)!;
    const noneOut = users.findLast((u) => outIn(u) === 0)!;
    expect(outIn(straddling.userId)).toBe(1);
    await until("the first part handled", async () =>
      Number(await redis.get(keys.eventsSeqKey(straddling.userId))) === straddling.seq ? true : undefined,
    );
    // Clients resuming from before the tick: one whose events are all in the first part, the one whose step it
    // splits, and one whose events are all in what was not yet out.
    const watched = [allOut, straddling.userId, noneOut];
    for (const u of watched) {
      const client = await connectAs(t, u);
      client.send({ op: "subscribe", channel: "private", since: seqBefore.get(u) });
      clients.push(client);
    }
    const straddlingClient = clients[1]!;
    await straddlingClient.until((f) => f.some((x) => x.type === "event" && x.seq === straddling.seq));

    // b takes over (the thief's lease lapsed) from no snapshot: it replays the log and publishes the whole step.
    await redis.del(keys.engineLease);
    const leaseB = new EngineLease(redis, keys, "b", 60_000, log);
    expect(await leaseB.tryAcquire()).toBe(true);
    const stopB = new AbortController();
    stopping.push(stopB);
    const leadingB = runLeader(
      { reader: leaderReader, writer: redis, keys, log, lease: leaseB, state: createState(makeParams()), blockMs: 20 },
      stopB.signal,
    );
    await until("the tick published", async () =>
      (await redis.get(keys.enginePublished)) === tick ? true : undefined,
    );
    stopB.abort();
    expect(await leadingB).toBe("stopped");
    await caughtUp();

    // The step is on engine:output once whole, after the part a left: the consumers saw both.
    const step = await stepOutputs(tick);
    expect(step.length).toBe(prefix.length + 1 + 2 * USERS);
    expect(step.slice(prefix.length).map((o) => o.id)).toEqual(step.slice(prefix.length).map((_, i) => `${tick}:${i}`));

    // Postgres: each close once.
    const { rows } = await pg.db.query<{ n: string; distinct: string }>(
      "SELECT count(*) AS n, count(DISTINCT close_id) AS distinct FROM closed_orders",
    );
    expect(rows[0]).toEqual({ n: String(USERS), distinct: String(USERS) });
    // Each user's events: stored once each, contiguous, ending with the close then its balances; the read models as
    // the last of them left them.
    const reads = redis.pipeline();
    for (const u of users) reads.hgetall(keys.balancesKey(u)).hlen(keys.openTradesKey(u));
    const models = (await reads.exec())!.map(([, value]) => value);
    const stored = await Promise.all(users.map((u) => readEventsAfter(redis, keys, u, 0)));
    for (const [i, u] of users.entries()) {
      const events = stored[i]!;
      if (!events.ok) throw new Error(`${u}: ${events.reason}`);
      const before = seqBefore.get(u)!;
      expect(events.events.map((e) => e.seq)).toEqual(Array.from({ length: before + 2 }, (_, n) => n + 1));
      const [close, paid] = events.events.slice(-2) as [PrivateOutput, PrivateOutput];
      expect([close.type, paid.type]).toEqual(["closed_order", "balances_changed"]);
      expect(events.continued).toContain(close.seq);
      expect(events.continued).not.toContain(paid.seq);
      expect(models[2 * i]).toEqual((paid as Extract<EngineOutput, { type: "balances_changed" }>).balances);
      expect(models[2 * i + 1]).toBe(0);
    }
    // The stream: each of those two events once, in order, and the summary only after the step's last. One more
    // event each, fanned out after all the worker fanned out: once it is there, any repeat would be too.
    for (const [i, u] of watched.entries()) {
      const next = balancesEvent(u, seqBefore.get(u)! + 3, "1");
      await storeEvents(t, [next]);
      await fanOutEvents(t, [next]);
      await clients[i]!.until((f) => f.some((x) => x.type === "summary" && x.seq === next.seq));
      const close = seqBefore.get(u)! + 1;
      const sent = clients[i]!.frames.filter((f) => f.type === "event" || f.type === "summary");
      expect(sent.map((f) => `${f.type} ${String(f.seq)}`)).toEqual([
        `event ${close}`,
        `event ${close + 1}`,
        `summary ${close + 1}`,
        `event ${next.seq}`,
        `summary ${next.seq}`,
      ]);
    }
  } finally {
    for (const stop of stopping) stop.abort();
    for (const client of clients) client.close();
    stopWorker.abort();
    await working;
    a.writer.disconnect();
    for (const connection of [leaderReader, workerReader, workerWriter]) connection.disconnect();
  }
});

/** An ETH quote at `bid` (= ask), stamped with the log time it goes in at: fresh. */
function ethAt(bid: string, ms: number): EngineInput {
  return { type: "price_update", market: "ETH_USDC_PERP", bid, ask: bid, exchangeTimeUs: `${ms}000`, source: "sim" };
}

/** The outputs of the step of input `inputId` on engine:output, in stream order (repeats included). */
async function stepOutputs(inputId: string): Promise<EngineOutput[]> {
  const entries = (await t.redis.xrange(t.keys.output, "-", "+")) as [string, string[]][];
  return entries.flatMap(([, fields]) => {
    const decoded = decodeOutputFields(fields);
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.message.inputId === inputId ? [decoded.message] : [];
  });
}
