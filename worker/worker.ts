/**
 * The worker: a consumer group on `engine:output`. For each batch: first the quotes' read models (the latest quote
 * per asset) and, for each quote the read model shows, its fan-out entry, so a price reaches the stream without
 * waiting for the rest of the batch. Then, in stream order: closed orders, entry orders and filled spot orders into
 * Postgres (history-writes.ts, spot-orders.ts: a replay's duplicates insert nothing, an older order view never
 * replaces a newer one) and the quotes' 1-minute candles (candles.ts), the other read models into Redis (guarded by
 * watermarks, see read-models.ts) with each private event appended to its user's events store in the same script as
 * its read-model write (events.ts), and only then each `order_response` onto its per-request key, so a client that got
 * its answer reads its own write next; then the batch's events and candles onto the stream replicas' fan-out.
 * Entries are acknowledged only after all of that succeeded; a crash before XACK leaves them pending, and another
 * worker (or this one, restarted) claims them.
 *
 * Only quotes go out early, and they do not wait for the batch before either: the next batch is read, and its quotes
 * fanned out, while the rest of this one (its Postgres writes above all) is still under way. A quote carries no
 * sequence number and nothing waits on it: a stream replica sends the latest price it has before a user's next event,
 * so a quote that overtakes the events before it in the log reaches a client no later than it did, and never after
 * the events it caused (those follow it in the log, so in this batch's later fan-out or a later batch's). A batch run
 * again (after a crash, or a failure later in the batch) sends again each of its quotes that the read model still
 * shows, since the earlier attempt's fan-out may have failed; a stream replica drops a quote whose output id it has
 * already had (stream/hub.ts). A quote a later one has replaced in the read model meanwhile is not sent again.
 *
 * A consumer holds at most two batches pending (the one whose rest is running, the one just read), never more than
 * MAX_PENDING_PER_CONSUMER (999) entries together: Upstash refuses an XREADGROUP that would take a consumer's pending
 * entries list to its limit of 1,000, or perhaps only past it ("ERR XReadGroup is cancelled. Pending Entries List limit
 * per consumer is about to be reached", Upstash docs, troubleshooting/stream_pel_limit). So batches are 499 entries by
 * default (DEFAULT_BATCH_SIZE), and with batches of 500 or more a batch is acknowledged before the next is read; a
 * claim waits for the batch under way; and a worker restarted under the same consumer name first handles what it left
 * pending, through XPENDING + XCLAIM, which add nothing to its list, before its first XREADGROUP.
 *
 * A group read whose answer is lost with the connection (a network blip) may have run in Redis: its entries are then
 * pending on this consumer, and no later read returns them. Sent again by ioredis, it would take the next entries on
 * top of them; left alone, they would wait for a claim (claimIdleMs) while later batches went on, every answer among
 * them late and each of their users' later events held behind the gap. So a read is abandoned when the reader's
 * connection closes before its answer (unlessClosed); once the reader answers a PING, which Redis runs after any
 * read sent before it on that connection, the batch under way is finished and this consumer's pending entries are
 * handled, as at a restart, before the next read. A claim whose answer was lost the same way (XAUTOCLAIM, which
 * ioredis sends again and which then takes other entries) is followed by the same.
 *
 * Nothing else removes entries from engine:output, so the workers trim it (trimHandledOutputs): what every group on
 * it has acknowledged, once older than `outputKeepMs`. Consumers drop what a replay re-emits by the ids in the
 * bodies, never by what is still on the stream, so a trimmed output is not missed.
 *
 * Every wait is bounded (watchdog.ts): a step that has not ended after `stuckAfterMs` is a connection that stopped
 * answering, and the worker ends with `worker_stuck` rather than hold every answer, and its stop, for ever. Time while
 * the reader or writer is down (redis-outages.ts: a Redis restarting, failing over, or loading) does not count: the
 * worker waits for it to come back, as ioredis does, and goes on.
 *
 * A Postgres that is down (postgres-outages.ts: refusing connections, starting up, in recovery) is not waited for:
 * trading needs only Redis, and the users waiting for answers need only Redis too. From the batch whose Postgres
 * writes failed on it, each batch is handled without them: its range is owed in the Postgres backlog
 * (postgres-backlog.ts) before any of its answers goes out, since the API tells a target whose row is still owed from
 * one never the user's by whether anything is owed; then its Redis part as above (read models, events, answers, the
 * fan-out of its quotes and events, in log order); then it is acknowledged, so the consumer's pending list stays within
 * its limit however long the outage lasts. Beside the batches, the Postgres lane (postgresLane) tries Postgres
 * again, 1 s after the failure, doubling to every 10 s, by writing what is owed; once a write goes through (an answer
 * alone does not do: postgres-outages.ts), batches go back to the order above (Postgres before Redis) and the lane
 * writes the rest, as any worker's lane does when it finds a backlog. Meanwhile an answer can reach its client before
 * its history row is written, and no candle is fanned out; those of the outage go out as the backlog is written. A stop
 * during an outage ends the worker as any stop does: what is owed stays owed, for any worker.
 *
 * Nor does the worker wait long for Postgres at its start: it gives the lane's preparation of Postgres (prepareDb:
 * connect, migrate, merge the hourly candles) a few seconds, then reads, whether or not it is done: it may wait on
 * another process's migration lock or run a long migration. Until it is done, each batch is handled as during an
 * outage, its range owed; the lane writes what is owed once it is done, and a stop meanwhile does not wait for it.
 */
import type { Redis } from "ioredis";
import { isPrivateOutput, type EngineOutput, type OutputOf } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { decodeOutputFields, privateEventOf, stepContinues } from "../contract/stream-fields.ts";
import type { Logger } from "../platform/log.ts";
import type { Queryable } from "../platform/postgres.ts";
import { settledWithin } from "../platform/config.ts";
import { postgresErrorCode } from "../platform/postgres-errors.ts";
import { CLOSED, unlessClosed } from "../platform/redis.ts";
import { EVENT_SCRIPTS, fanOutEntries, recordLostEvents } from "./events.ts";
import { writeCandles, type CandleView } from "./candles.ts";
import { writeHistory } from "./history-writes.ts";
import type { WorkerMetrics } from "./metrics.ts";
import { catchUp, oweAndAcknowledge, oweBatch, owedEntries } from "./postgres-backlog.ts";
import { watchPostgresOutages, type PostgresOutages, type PostgresRetry } from "./postgres-outages.ts";
import { queueAnswer, queueOutputWrite, READ_MODEL_SCRIPTS } from "./read-models.ts";
import { watchRedisOutages } from "./redis-outages.ts";
import { watchdog, type Bounded } from "./watchdog.ts";

export interface WorkerOptions {
  /**
   * Used only for blocking group reads. Best made with ioredis's autoResendUnfulfilledCommands off (main.ts): a read
   * whose answer was lost is abandoned either way, and one sent again only takes entries for nothing, and blocks.
   */
  readonly reader: Redis;
  readonly writer: Redis;
  readonly db: Queryable;
  readonly keys: Keyspace;
  readonly log: Logger;
  readonly consumer: string;
  /**
   * Entries a group read asks for. Default DEFAULT_BATCH_SIZE: two batches together stay within
   * MAX_PENDING_PER_CONSUMER, so a read can come while the batch before it is still being written.
   */
  readonly batchSize?: number;
  readonly blockMs?: number;
  /** Entries pending this long on a consumer that stopped are taken over. */
  readonly claimIdleMs?: number;
  /**
   * A consumer of the group with nothing pending and idle this long is a worker that is gone: it is removed, so
   * restarts (a new name each) do not pile up in XINFO CONSUMERS. Default ten times claimIdleMs.
   */
  readonly forgetConsumerMs?: number;
  readonly responseTtlMs?: number;
  /**
   * Acknowledged outputs are kept on engine:output this long (ms; default an hour) for an operator to inspect, then
   * trimmed.
   */
  readonly outputKeepMs?: number;
  /** How often `worker_stats` is logged (entries handled since the last one, the group's lag and pending count). */
  readonly statsEveryMs?: number;
  /** Prometheus metrics (worker/metrics.ts). */
  readonly metrics?: WorkerMetrics;
  /**
   * How long one step (a command, a batch's writes, a group read past blockMs) may take, time while a Redis connection
   * is down aside, before the worker counts itself stuck on a dead connection: it logs `worker_stuck` and ends with a
   * WorkerStuckError, a stop included (default DEFAULT_STUCK_AFTER_MS).
   */
  readonly stuckAfterMs?: number;
  /**
   * The reader's and writer's outages (redis-outages.ts), watched from before they connected: a connection that
   * connected before the watch began counts as up, so one still loading then would count as silent. Default:
   * watched from the start of runWorker, for callers that start it at once; runWorker ends the watch.
   */
  readonly outages?: ReturnType<typeof watchRedisOutages>;
  /** How soon Postgres is tried again while it is down (default DEFAULT_POSTGRES_RETRY). */
  readonly postgresRetry?: PostgresRetry;
  /**
   * Makes `db` usable: connects and migrates (main.ts). Started by the lane as the worker starts, not waited for by
   * the batches (they owe their Postgres writes until it is done), and, if it failed on an outage, run again with each
   * try until it succeeds; not bounded by the watchdog, since a migration may rightly run long. A stop does not wait
   * for it: one still under way then must close what it made itself. Without it, `db` is ready as given.
   */
  readonly prepareDb?: () => Promise<void>;
  /** How long the start waits for prepareDb's first try before it reads anyway (default DEFAULT_PREPARE_WAIT_MS). */
  readonly prepareWaitMs?: number;
}

/** Fields are typed nullable as ioredis types a group read's entries. */
type Entry = [id: string, fields: string[] | null];

/**
 * What XCLAIM and XAUTOCLAIM return: an entry trimmed from the stream while pending comes back as nil (XCLAIM; and
 * XAUTOCLAIM before Redis 7, which lists such ids apart and drops them from the pending list instead).
 */
type Claimed = Entry | null;

/**
 * The most a consumer holds pending, with a read's COUNT: strictly below Upstash's figure of 1,000. Upstash documents
 * its limit only by the refusal, "ERR XReadGroup is cancelled. Pending Entries List limit per consumer is about to be
 * reached. Limit: 1000, Current PEL size: 90, Requested Read: 20" (upstash.com/docs/redis/troubleshooting/
 * stream_pel_limit): "about to be reached" does not say that reaching 1,000 is allowed.
 */
export const MAX_PENDING_PER_CONSUMER = 999;

/** The largest batch two of which fit within MAX_PENDING_PER_CONSUMER: one being written while the next is read. */
export const DEFAULT_BATCH_SIZE = Math.floor(MAX_PENDING_PER_CONSUMER / 2);

/**
 * The default of `stuckAfterMs`. A step normally takes milliseconds, a batch's writes well under a second, and a
 * Postgres waking from suspension answers within seconds: a step ten times as long is no slow step. A stop held by a
 * stuck step for this long, then by the Postgres pool's close (seconds), still ends within the 30 s that npm start
 * and ECS give a process before SIGKILL.
 */
export const DEFAULT_STUCK_AFTER_MS = 20_000;
/** How long the start waits for the lane's first preparation of Postgres before it reads (runWorker says why). */
export const DEFAULT_PREPARE_WAIT_MS = 2_000;

export async function ensureGroup(redis: Redis, keys: Keyspace): Promise<void> {
  try {
    await redis.xgroup("CREATE", keys.output, keys.workerGroup, "0", "MKSTREAM");
  } catch (err) {
    if (!(err instanceof Error && err.message.includes("BUSYGROUP"))) throw err;
  }
}

export async function runWorker(o: WorkerOptions, signal: AbortSignal): Promise<void> {
  const batch = o.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_PENDING_PER_CONSUMER)
    throw new RangeError(`batchSize: expected a whole number from 1 to ${MAX_PENDING_PER_CONSUMER}, received ${batch}`);
  const outages = o.outages ?? watchRedisOutages([o.reader, o.writer]);
  const bounded = watchdog(o.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS, o.log, outages, signal);
  const postgres = watchPostgresOutages(o.log, o.postgresRetry);
  // Ends the lane's waits once the worker ends, on a stop or on an error: a preparation waiting on another's migration
  // lock must hold neither.
  const ending = new AbortController();
  const lane = postgresLane(o, batch, bounded, postgres, AbortSignal.any([signal, ending.signal]));
  // Not prepared yet is, to a batch, the same as down: its Postgres writes are owed.
  const forBatches: BatchPostgres = {
    isDown: () => !lane.prepared() || postgres.isDown(),
    failed: (err) => postgres.failed(err),
    succeeded: () => postgres.succeeded(),
  };
  // Entries acknowledged since the last worker_stats line.
  let handled = 0;
  const run = (step: string): BatchRun => ({
    bound: (work) => bounded(step, work),
    postgres: forBatches,
    acknowledged(entries, owed) {
      handled += entries;
      o.metrics?.handled(entries);
      if (owed) lane.wake();
    },
  });
  // The rest of the last batch read (Postgres, Redis, fan-out, XACK), running while the next batch is read and its
  // quotes go out. At most one: each batch's rest starts after the one before it ended, so everything but quotes
  // reaches Redis, Postgres and the fan-out in log order, and a failure ends the loop at the next batch. Bounded, so
  // no wait on it (a stop's included) lasts longer than stuckAfterMs, Redis outages aside.
  let rest: Promise<void> = Promise.resolve();
  let restEntries = 0;
  let writerCloses = 0;
  const countWriterClose = () => void writerCloses++;
  o.writer.on("close", countWriterClose);
  try {
    await bounded(
      "start",
      ensureGroup(o.writer, o.keys).then(() => loadScripts(o.writer)),
    );
    // Prepares Postgres beside the batches, from now on. A start where Postgres answers at once prepares it in well
    // under a second: waiting that long keeps such a start's batches writing Postgres in order rather than owing it,
    // and it stays under the API's ENGINE_TIMEOUT_MS (5 s), so no request is lost to it. Past it, nothing waits.
    lane.poke();
    const waitMs = o.prepareWaitMs ?? DEFAULT_PREPARE_WAIT_MS;
    const settled = () => true;
    if ((await settledWithin(lane.preparation().then(settled, settled), waitMs, signal)) === undefined) {
      // Not come to anything yet (a migration lock held elsewhere, a long migration, a Postgres that does not
      // answer): said once, since nothing else would say it until it ends.
      if (!signal.aborted) o.log.warn("postgres_preparing", { waitedMs: waitMs });
    } else if (!lane.prepared()) {
      // Failed: a refusal (a DATABASE_URL no wait mends) ends the worker before it answers anything; an outage
      // leaves Postgres down, logged, and the lane tries again when due.
      await lane.idle();
      lane.throwIfFailed();
    }
    const blockMs = o.blockMs ?? 1000;
    await handleOwnPending(o, batch, bounded, run("own_pending"));
    let lastClaimMs = 0;
    let trimmed = 0;
    let lastStatsMs = Date.now();
    while (!signal.aborted) {
      lane.poke();
      if (Date.now() - lastClaimMs >= (o.claimIdleMs ?? 30_000) / 2) {
        await rest;
        restEntries = 0;
        const closesBefore = writerCloses;
        const [, claimed] = (await bounded(
          "claim",
          o.writer.xautoclaim(
            o.keys.output,
            o.keys.workerGroup,
            o.consumer,
            o.claimIdleMs ?? 30_000,
            "0-0",
            "COUNT",
            batch,
          ),
        )) as [string, Claimed[]];
        if (writerCloses !== closesBefore) {
          // This answer may be a second run's: what the first took is pending here too, and is claimed by no one.
          o.log.warn("group_reply_lost", { command: "XAUTOCLAIM" });
          await handleOwnPending(o, batch, bounded, run("own_pending"));
        } else if (claimed.length > 0) {
          o.log.info("claimed_pending", { entries: claimed.length });
          await handleBatch(o, claimed, run("claimed_batch"));
        }
        await bounded("forget_consumers", forgetGoneConsumers(o));
        const trim = await bounded("trim", trimOutputs(o));
        trimmed += trim.trimmed;
        if (trim.owed) lane.wake();
        lastClaimMs = Date.now();
      }
      // The batch still pending counts against the consumer's pending limit.
      if (restEntries + batch > MAX_PENDING_PER_CONSUMER) {
        await rest;
        restEntries = 0;
      }
      const reply = await bounded(
        "read",
        unlessClosed(
          o.reader,
          o.reader.xreadgroup(
            "GROUP",
            o.keys.workerGroup,
            o.consumer,
            "COUNT",
            batch,
            "BLOCK",
            blockMs,
            "STREAMS",
            o.keys.output,
            ">",
          ),
        ),
        blockMs,
      );
      if (reply === CLOSED) {
        o.log.warn("group_reply_lost", { command: "XREADGROUP" });
        await rest;
        restEntries = 0;
        await bounded("reader_ping", pingThrough(o.reader));
        await handleOwnPending(o, batch, bounded, run("own_pending"));
        continue;
      }
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length > 0) {
        const outputs = await bounded("batch_quotes", handleQuotes(o, entries));
        const previous = rest;
        rest = previous.then(() => handleRest(o, entries, outputs, run("batch_rest")));
        rest.catch(() => undefined); // awaited below or at the next batch; not unhandled meanwhile
        await previous;
        restEntries = entries.length;
      }
      if (Date.now() - lastStatsMs >= (o.statsEveryMs ?? 10_000)) {
        const backlog = await bounded("stats", groupBacklog(o.writer, o.keys));
        // Read only while some may be owed: an idle worker's stats cost no more than before.
        const postgresBacklog = lane.mayBeOwed() ? await bounded("stats", owedEntries(o.writer, o.keys)) : 0;
        o.metrics?.backlog(backlog);
        o.metrics?.postgresBacklog(postgresBacklog);
        o.log.info("worker_stats", { handled, trimmed, ...backlog, postgresBacklog });
        handled = 0;
        trimmed = 0;
        lastStatsMs = Date.now();
      }
    }
    await rest;
    await lane.idle();
    lane.throwIfFailed();
  } finally {
    ending.abort();
    o.writer.off("close", countWriterClose);
    await rest.finally(() => lane.idle()).finally(outages.close);
  }
}

/**
 * The Postgres lane, beside the batches (one run at a time, started by `poke`: at the start, then by the loop): until
 * prepareDb has succeeded, a try at it (the first at once, later ones when due after an outage); while Postgres is
 * down, a try at it when one is due (a SELECT 1, then the backlog); while it is up and some range may be owed, the
 * backlog written (postgres-backlog.ts), its candles fanned out. A try ends the outage only once a page of the backlog
 * is written, since a node that answers may still refuse every write (postgres-outages.ts); one that wrote nothing
 * puts the outage on trial, for the batches' writes to end. A run that fails on an outage leaves Postgres down until
 * its next try; any other failure ends the worker at the next `poke`, as a batch's would (a refused DATABASE_URL
 * included, whenever it comes). Each step is bounded, but prepareDb, which may run a long migration: a stop leaves it
 * instead.
 */
function postgresLane(o: WorkerOptions, batch: number, bounded: Bounded, postgres: PostgresOutages, stop: AbortSignal) {
  let prepared = o.prepareDb === undefined;
  // Whether a range may be owed: looked at once at the start, then after each wake (this worker owed a batch, or a
  // claim round's trim saw a backlog).
  let owed = true;
  let running: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  const bound = <T>(work: Promise<T>) => bounded("postgres_backlog", work);
  // True once prepared; false when a stop came first: the stop is not held by a migration waiting on another's lock,
  // nor by a connect to a Postgres that does not answer (prepareDb then closes what it made when it ends).
  // The last prepareDb started, settled or not: the start waits a while for the first.
  let preparation: Promise<unknown> = Promise.resolve();
  const prepare = async (): Promise<boolean> => {
    if (prepared) return true;
    if (stop.aborted) return false;
    // Raced below, so its failure after a stop is handled (and heard by no one).
    const preparing = o.prepareDb!().then(() => true);
    preparation = preparing;
    let onStop: () => void = () => undefined;
    const stopped = new Promise<false>((resolve) => (onStop = () => resolve(false)));
    stop.addEventListener("abort", onStop, { once: true });
    try {
      prepared = await Promise.race([preparing, stopped]);
    } finally {
      stop.removeEventListener("abort", onStop);
    }
    return prepared;
  };
  const tryAndCatchUp = async () => {
    owed = false; // a wake during the run sets it again, for another run
    if (!(await prepare())) return;
    // While down: what the recovery's line says, once a write ends the outage.
    let recovery: { backlogEntries: number } | undefined;
    if (postgres.isDown()) {
      await bound(o.db.query("SELECT 1"));
      recovery = { backlogEntries: await bound(owedEntries(o.writer, o.keys)) };
    }
    let wroteAny = false;
    const write = async (outputs: readonly EngineOutput[], owed: ReadonlySet<EngineOutput>) => {
      const { candles, wrote, refused } = await writePostgres(o, outputs, bound);
      if (wrote) {
        wroteAny = true;
        postgres.succeeded(recovery);
      }
      await bound(fanOutEntries(o.writer, o.keys, [], new Set(), candles));
      // Those between two owed ranges were counted by their own batch.
      countRefused(
        o,
        [],
        refused.filter((output) => owed.has(output)),
      );
    };
    const startedAt = performance.now();
    const options = { redis: o.writer, keys: o.keys, pageSize: batch, bound, write, log: o.log, stop };
    const { entries, caughtUp } = await catchUp(options);
    // Nothing written that shows Postgres takes writes: nothing owed, or another worker catching up. Postgres can be
    // down again after this try wrote (a batch met a new outage meanwhile): that outage has had no try yet.
    if (recovery !== undefined && !wroteAny && postgres.isDown()) postgres.answered(recovery);
    if (entries > 0 && caughtUp)
      o.log.info("postgres_caught_up", { entries, ms: Math.round(performance.now() - startedAt) });
  };
  return {
    /** Whether prepareDb has succeeded: until then batches owe their Postgres writes. */
    prepared: () => prepared,
    wake: () => void (owed = true),
    mayBeOwed: () => owed || running !== undefined || postgres.isDown(),
    /** Throws what ended an earlier run, unless an outage. */
    throwIfFailed(): void {
      if (failure !== undefined) throw failure.error;
    },
    /** Starts a run if one is due; throws what ended an earlier run, unless an outage. */
    poke(): void {
      if (failure !== undefined) throw failure.error;
      if (running !== undefined || stop.aborted) return;
      if (postgres.isDown() ? !postgres.tryDue() : !owed) return;
      running = tryAndCatchUp()
        .catch((err: unknown) => {
          owed = true;
          if (!postgres.failed(err)) failure = { error: err };
        })
        .finally(() => (running = undefined));
    },
    /** Resolves once no run is under way. */
    idle: (): Promise<void> => running ?? Promise.resolve(),
    /** The last prepareDb started (the first, right after the first `poke`); it may reject. */
    preparation: (): Promise<unknown> => preparation,
  };
}

/**
 * Returns once `redis` answers a PING: Redis runs it after every command sent (or sent again, or queued) before it on
 * that connection, so a read abandoned by unlessClosed has run by then or never will.
 */
async function pingThrough(redis: Redis): Promise<void> {
  while ((await unlessClosed(redis, redis.ping())) === CLOSED);
}

/**
 * Deletes a consumer only while it has nothing pending (DELCONSUMER would drop its pending entries for good) and
 * only if it still exists (CREATECONSUMER, undone at once, tells): 1 when it was deleted here.
 */
const FORGET_CONSUMER = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
if redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1`;

/**
 * Removes the group's consumers that have nothing pending and were idle for forgetConsumerMs (workers that stopped;
 * what they left pending was claimed first). One still alive after all is only recreated by its next read.
 */
async function forgetGoneConsumers(o: WorkerOptions): Promise<void> {
  const afterMs = goneAfterMs(o);
  const consumers = (await o.writer.xinfo("CONSUMERS", o.keys.output, o.keys.workerGroup)) as unknown[][];
  for (const consumer of consumers) {
    const field = (name: string) => consumer[consumer.indexOf(name) + 1];
    const name = String(field("name"));
    const idleMs = Number(field("idle"));
    if (name === o.consumer || Number(field("pending")) !== 0 || !(idleMs >= afterMs)) continue;
    if (await forgetConsumer(o.writer, o.keys, name)) o.log.info("consumer_removed", { consumer: name, idleMs });
  }
}

/** How long a consumer (or another group) may sit idle before it counts as gone: forgetConsumerMs's default. */
function goneAfterMs(o: WorkerOptions): number {
  return o.forgetConsumerMs ?? 10 * (o.claimIdleMs ?? 30_000);
}

/** Deletes `consumer` from the group if it has nothing pending; false when it has (or is gone already). */
export async function forgetConsumer(redis: Redis, keys: Keyspace, consumer: string): Promise<boolean> {
  return (await redis.eval(FORGET_CONSUMER, 1, keys.output, keys.workerGroup, consumer)) === 1;
}

/**
 * Trims engine:output below the oldest entry some group may still need: a group's oldest pending entry (delivered,
 * not acknowledged: a claim reads it again), or else the last one it was delivered (it has acknowledged everything
 * before); and below the first entry of the oldest range the Postgres backlog owes (postgres-backlog.ts). No group,
 * nothing trimmed. KEYS[1] engine:output, KEYS[2] the backlog; ARGV[1]: nor anything added at or after this time (ms);
 * ARGV[2]: at most this many entries; ARGV[3]: the workers' own group. Returns how many went, the group other than the
 * workers' that needs the oldest entry (or '') with that entry's id, and 1 when the backlog owes any range, else 0.
 */
const TRIM_HANDLED = `
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local bound = ARGV[1] .. '-0'
local other, otherNeeds = '', ''
local oldestOwed = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local owes = 0
if #oldestOwed > 0 then
  owes = 1
  -- Scored by ms: the oldest range is among those of the lowest score.
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], oldestOwed[2], oldestOwed[2])) do
    local first = string.match(member, '^(%S+) ')
    if before(first, bound) then bound = first end
  end
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, '', '', owes} end
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local needed = info['last-delivered-id']
  if info['pending'] > 0 then needed = redis.call('XPENDING', KEYS[1], info['name'])[2] end
  if before(needed, bound) then bound = needed end
  if info['name'] ~= ARGV[3] and (other == '' or before(needed, otherNeeds)) then other, otherNeeds = info['name'], needed end
end
if bound == '0-0' then return {0, other, otherNeeds, owes} end
local first = redis.call('XRANGE', KEYS[1], '-', '(' .. bound, 'COUNT', tonumber(ARGV[2]) + 1)
if #first > tonumber(ARGV[2]) then bound = first[#first][1] end
return {redis.call('XTRIM', KEYS[1], 'MINID', bound), other, otherNeeds, owes}`;

/** At most this many entries go per call: one XTRIM over a long backlog (an upgrade's first) would block Redis. */
export const TRIM_CHUNK = 2_000;
/** Calls per claim round: a backlog drains over rounds, the worker's own work between them. */
const TRIM_CALLS_PER_ROUND = 50;
/** The default of `outputKeepMs`. */
export const DEFAULT_OUTPUT_KEEP_MS = 3_600_000;

export interface TrimResult {
  /** Entries removed. */
  readonly trimmed: number;
  /** Of the groups other than the workers', the one whose needed entry (pending, else last delivered) is oldest. */
  readonly heldBy: string | null;
  /** That entry's id. */
  readonly heldAt: string | null;
  /** The Postgres backlog owes some range (which the trim kept). */
  readonly owed: boolean;
}

/**
 * Removes from engine:output up to `maxEntries` of what every group on it has acknowledged, that the Postgres backlog
 * does not owe, and that was added before `beforeMs` (by Redis' clock, which stamps the ids).
 */
export async function trimHandledOutputs(
  redis: Redis,
  keys: Keyspace,
  beforeMs: number,
  maxEntries = TRIM_CHUNK,
): Promise<TrimResult> {
  const cutoff = Math.max(0, Math.floor(beforeMs));
  const [trimmed, holder, held, owes] = (await redis.eval(
    TRIM_HANDLED,
    2,
    keys.output,
    keys.postgresBacklog,
    String(cutoff),
    String(maxEntries),
    keys.workerGroup,
  )) as [number, string, string, number];
  return {
    trimmed: Number(trimmed),
    heldBy: holder === "" ? null : holder,
    heldAt: holder === "" ? null : held,
    owed: owes === 1,
  };
}

/**
 * One claim round's trim, in chunks; says whether the Postgres backlog owes anything. Another group that needs entries
 * older than the keep time by more than forgetConsumerMs (say, one an operator made and forgot) holds every trim back:
 * said with a warning each round.
 */
async function trimOutputs(o: WorkerOptions): Promise<{ trimmed: number; owed: boolean }> {
  const cutoff = Date.now() - (o.outputKeepMs ?? DEFAULT_OUTPUT_KEEP_MS);
  let trimmed = 0;
  let owed = false;
  for (let call = 0; call < TRIM_CALLS_PER_ROUND; call++) {
    const result = await trimHandledOutputs(o.writer, o.keys, cutoff);
    trimmed += result.trimmed;
    owed = result.owed;
    if (result.trimmed === TRIM_CHUNK) continue;
    const heldMs = result.heldAt === null ? undefined : Number(result.heldAt.split("-")[0]);
    const staleMs = goneAfterMs(o);
    // Only another group: the workers' own behind is lag, pending entries or the Postgres backlog, which worker_stats
    // and its metrics show.
    if (heldMs !== undefined && heldMs < cutoff - staleMs) {
      o.log.warn("output_trim_held", { group: result.heldBy, neededId: result.heldAt, behindMs: cutoff - heldMs });
    }
    break;
  }
  return { trimmed, owed };
}

/**
 * The group's backlog on engine:output (XINFO GROUPS): `lag`, entries not yet delivered to any worker (null when
 * Redis cannot tell, e.g. after entries were deleted from the middle), and `pending`, delivered but not acknowledged.
 */
export async function groupBacklog(
  redis: Redis,
  keys: Keyspace,
): Promise<{ lag: number | null; pending: number } | undefined> {
  const groups = (await redis.xinfo("GROUPS", keys.output).catch(() => [])) as unknown[][];
  for (const group of groups) {
    const field = (name: string) => group[group.indexOf(name) + 1];
    if (field("name") !== keys.workerGroup) continue;
    const lag = field("lag");
    return { lag: lag === null || lag === undefined ? null : Number(lag), pending: Number(field("pending")) };
  }
  return undefined;
}

/**
 * Handles and acknowledges, a batch at a time, what this consumer name has pending: from an earlier run, or from a
 * read or claim whose answer was lost. XPENDING lists them and XCLAIM (to itself, so its list does not grow) returns
 * their fields; an entry trimmed from the stream meanwhile comes back without fields, or not at all, and is
 * acknowledged as is.
 */
async function handleOwnPending(o: WorkerOptions, batch: number, bounded: Bounded, run: BatchRun): Promise<void> {
  for (;;) {
    const pending = (await bounded(
      "own_pending",
      o.writer.xpending(o.keys.output, o.keys.workerGroup, "-", "+", batch, o.consumer),
    )) as [id: string, ...unknown[]][];
    if (pending.length === 0) return;
    const ids = pending.map(([id]) => id);
    const claimed = (await bounded(
      "own_pending",
      o.writer.xclaim(o.keys.output, o.keys.workerGroup, o.consumer, 0, ...ids),
    )) as (Entry | null)[];
    const entries = claimed.filter((entry): entry is Entry => entry !== null);
    const returned = new Set(entries.map(([id]) => id));
    const gone = ids.filter((id) => !returned.has(id));
    o.log.info("handling_own_pending", { entries: entries.length, trimmed: gone.length });
    if (gone.length > 0) await bounded("own_pending", o.writer.xack(o.keys.output, o.keys.workerGroup, ...gone));
    if (entries.length > 0) await handleBatch(o, entries, run);
  }
}

/** What a batch knows of Postgres (postgres-outages.ts): down (or not prepared yet), whether an error is an outage. */
type BatchPostgres = Pick<PostgresOutages, "isDown" | "failed" | "succeeded">;

/** How a batch's steps are bounded (watchdog.ts), what it knows of Postgres, and whom it tells what it acknowledged. */
export interface BatchRun {
  readonly bound: <T>(work: Promise<T>) => Promise<T>;
  /** Without: a Postgres outage fails the batch as any error does. */
  readonly postgres?: BatchPostgres;
  /** The batch acknowledged `entries`; `owed`: its Postgres writes wait in the backlog. */
  readonly acknowledged?: (entries: number, owed: boolean) => void;
}

/** A batch handled on its own (tests): unbounded, and failed by a Postgres outage as by any error. */
const ON_ITS_OWN: BatchRun = { bound: (work) => work };

export async function handleBatch(
  o: WorkerOptions,
  entries: readonly Claimed[],
  run: BatchRun = ON_ITS_OWN,
): Promise<void> {
  await handleRest(o, entries, await run.bound(handleQuotes(o, entries)), run);
}

/**
 * A batch's outputs, the events whose entries say their engine step has more for the same user, the users' seqs
 * of the private outputs it refused, and whether each entry it refused was a private output's.
 */
interface Decoded {
  readonly outputs: EngineOutput[];
  readonly continued: ReadonlySet<EngineOutput>;
  readonly lost: { userId: string; seq: number }[];
  readonly refused: ("private" | "public")[];
}

/** Decodes a batch, writes its quotes' read models and fans out those that moved; returns the batch's outputs. */
async function handleQuotes(o: WorkerOptions, entries: readonly Claimed[]): Promise<Decoded> {
  const outputs: EngineOutput[] = [];
  const continued = new Set<EngineOutput>();
  const lost: { userId: string; seq: number }[] = [];
  const refusedKinds: ("private" | "public")[] = [];
  for (const entry of entries) {
    if (entry === null || entry[1] === null) continue; // trimmed from the stream while pending: nothing to apply
    const [id, fields] = entry;
    const decoded = decodeOutputFields(fields);
    if (decoded.ok) {
      outputs.push(decoded.message);
      if (stepContinues(fields)) continued.add(decoded.message);
    } else {
      const event = refused(o, id, fields, decoded.reason);
      if (event.userId !== undefined && event.seq !== undefined) lost.push({ userId: event.userId, seq: event.seq });
      refusedKinds.push(event.private ? "private" : "public");
    }
  }
  const quotes = outputs.filter((output) => output.type === "quote_updated");
  await fanOutEntries(o.writer, o.keys, await writeRedis(o, quotes, continued), continued);
  return { outputs, continued, lost, refused: refusedKinds };
}

/**
 * An entry that does not decode: logged, with the user and seq it names if it is a private output's (counted once its
 * batch is acknowledged: countRefused). It is acknowledged with its batch, since running it again cannot mend it.
 * Returns what privateEventOf found: that seq is recorded as lost (handleRest), so the user's events go on past it.
 */
function refused(o: WorkerOptions, id: string, fields: readonly string[], reason: string) {
  const event = privateEventOf(fields);
  const { userId, seq } = event;
  o.log.error("bad_output_entry", { id, reason, ...(userId === undefined ? {} : { userId, seq }) });
  return event;
}

/**
 * Counts refused entries in worker_bad_output_entries_total once their refusal is final: those of a batch once this
 * worker acknowledged it, those Postgres refused in an owed range once the lane wrote it. A batch that fails and runs
 * again (after a restart, or claimed by another worker) counts only where it is acknowledged; log lines, not counted,
 * come at each try.
 */
function countRefused(o: WorkerOptions, decode: readonly ("private" | "public")[], postgres: readonly EngineOutput[]) {
  for (const kind of decode) o.metrics?.badOutputEntry(kind, "decode");
  for (const output of postgres) o.metrics?.badOutputEntry(isPrivateOutput(output) ? "private" : "public", "postgres");
}

/**
 * Everything else of a batch whose quotes went out (handleQuotes), then its XACK, each step bounded. Its Postgres
 * writes come first, so that a client that got its answer finds the history it made; unless Postgres is down (known
 * so, or found so by these writes): then they are owed in the backlog (postgres-backlog.ts) first, so that no answer
 * is readable while its rows are neither written nor owed, the rest goes on without them, and the script that
 * acknowledges the batch owes them still.
 */
async function handleRest(o: WorkerOptions, entries: readonly Claimed[], batch: Decoded, run: BatchRun): Promise<void> {
  const { outputs, continued, lost } = batch;
  const others = outputs.filter((output) => output.type !== "quote_updated");
  const written = await writePostgresUnlessDown(o, outputs, run);
  const candles = written?.candles;
  const ids = entries.flatMap((entry) => (entry === null ? [] : [entry[0]]));
  await run.bound(
    (async () => {
      if (candles === undefined) await oweBatch(o.writer, o.keys, ids);
      await recordLostEvents(o.writer, o.keys, lost);
      await fanOutEntries(o.writer, o.keys, await writeRedis(o, others, continued), continued, candles ?? []);
      if (ids.length === 0) return;
      const acknowledged =
        candles === undefined
          ? await oweAndAcknowledge(o.writer, o.keys, ids)
          : await o.writer.xack(o.keys.output, o.keys.workerGroup, ...ids);
      // Counted once acknowledged, by the count Redis gives (not those another worker acknowledged meanwhile).
      run.acknowledged?.(acknowledged, candles === undefined);
      countRefused(o, batch.refused, written?.refused ?? []);
    })(),
  );
}

/**
 * A batch's Postgres writes (writePostgres); undefined, none made, while Postgres is down. One that wrote ends an
 * outage on trial (postgres-outages.ts).
 */
async function writePostgresUnlessDown(o: WorkerOptions, outputs: readonly EngineOutput[], run: BatchRun) {
  if (run.postgres?.isDown() === true) return undefined;
  try {
    const { candles, wrote, refused } = await writePostgres(o, outputs, run.bound);
    if (wrote) run.postgres?.succeeded();
    return { candles, refused };
  } catch (err) {
    if (run.postgres?.failed(err) === true) return undefined;
    throw err;
  }
}

/**
 * A batch's (or a backlog page's) history and candles, each write bounded by `bound` on its own; returns the candles
 * it touched, as stored, and whether it wrote anything. When Postgres refuses the data (SQLSTATE class 22, data
 * exception, or 23, integrity constraint violation: an output the codec passed that a column or constraint does not
 * take), no retry mends it, so the outputs are written again in halves, each half refused halved again: one or two
 * refused outputs cost about 2·log2(n) writes each. The search may waste 2·⌈log2 n⌉ + 2 writes on parts refused
 * whole; past that, there are many such outputs, and each part left is written one output at a time, so a batch
 * Postgres refuses whole costs at most n + 2·⌈log2 n⌉ + 3 writes, not 2n − 1. Each output refused alone is logged
 * as `bad_output_entry` and returned (the caller counts it: countRefused), and its Postgres writes left out (its
 * Redis part is applied as usual). Every write is idempotent, so what a failed part had written is written again
 * harmlessly.
 */
async function writePostgres(
  o: WorkerOptions,
  outputs: readonly EngineOutput[],
  bound: <T>(work: Promise<T>) => Promise<T>,
): Promise<{ candles: CandleView[]; wrote: boolean; refused: EngineOutput[] }> {
  const candles: CandleView[] = [];
  const refused: EngineOutput[] = [];
  let wrote = false;
  // True when written, false when Postgres refused the data; any other failure is thrown.
  const attempt = async (part: readonly EngineOutput[]): Promise<boolean> => {
    try {
      const result = await bound(writePostgresOnce(o, part));
      candles.push(...result.candles);
      wrote ||= result.wrote;
      return true;
    } catch (err) {
      const code = postgresErrorCode(err);
      if (code === undefined || !/^2[23][0-9A-Z]{3}$/.test(code)) throw err;
      if (part.length === 1) {
        refusedByPostgres(o, part[0]!, code, err as Error);
        refused.push(part[0]!);
      }
      return false;
    }
  };
  // Parts of several outputs refused whole that the search may still try: what finding two refused outputs takes,
  // wherever they are. Past it, each part left is written one output at a time.
  let wasteLeft = 2 * Math.ceil(Math.log2(Math.max(2, outputs.length))) + 2;
  // `part` was refused whole (and, alone, logged by attempt).
  const search = async (part: readonly EngineOutput[]): Promise<void> => {
    if (part.length === 1) return;
    const half = Math.ceil(part.length / 2);
    for (const sub of [part.slice(0, half), part.slice(half)]) {
      if (sub.length > 1 && wasteLeft <= 0) for (const output of sub) await attempt([output]);
      else if (!(await attempt(sub)) && sub.length > 1) {
        wasteLeft--;
        await search(sub);
      }
    }
  };
  if (!(await attempt(outputs))) await search(outputs);
  return { candles, wrote, refused };
}

/** An output whose history or candle Postgres refused with a data error: logged, with its user and seq if any. */
function refusedByPostgres(o: WorkerOptions, output: EngineOutput, code: string, err: Error) {
  const reason = `Postgres refused its history or candle: ${err.message}`;
  const user = isPrivateOutput(output) ? { userId: output.userId, seq: output.seq } : {};
  o.log.error("bad_output_entry", { id: output.id, reason, code, ...user });
}

async function writePostgresOnce(o: WorkerOptions, outputs: readonly EngineOutput[]) {
  const startedAt = performance.now();
  const wroteHistory = await writeHistory(o.db, outputs);
  const candles = await writeCandles(o.db, outputs, o.log);
  const wrote = wroteHistory || candles.length > 0;
  if (wrote) o.metrics?.postgresWrite((performance.now() - startedAt) / 1000);
  return { candles, wrote };
}

/**
 * writeReadModelsAndAnswers, and once more after loading the scripts when Redis had lost them (a restart). Throws
 * when it still fails: the batch is not acknowledged, and runs again.
 *
 * Every write there is a script. When Redis lost them, or the connection dropped, what failed is a suffix of the
 * pipeline, and no answer went out ahead of its read models. A command that fails on its own is different (a script
 * that errs while running, on a key of the wrong type say, or a write refused for memory that Redis has again a
 * moment later): a pipeline is not a transaction, the commands after it still run, and an answer can reach its client
 * while a read-model write before it failed, so the client can read state without that write until the batch runs
 * again. That is tolerable because the batch does run again, and that repairs the read model: the read-model writes
 * and event appends are idempotent, and of an answer pushed twice to its per-attempt key the function reads the
 * first.
 */
async function writeRedis(
  o: WorkerOptions,
  outputs: readonly EngineOutput[],
  continued: ReadonlySet<EngineOutput>,
): Promise<EngineOutput[]> {
  if (outputs.length === 0) return [];
  let written = await writeReadModelsAndAnswers(o, outputs, continued);
  if (!written.ok && written.error.message.startsWith("NOSCRIPT")) {
    await loadScripts(o.writer);
    written = await writeReadModelsAndAnswers(o, outputs, continued);
  }
  if (!written.ok) throw written.error;
  return written.fanout;
}

/**
 * One pipeline: per output its read-model write and, for a private event, its append to the user's events
 * store (so the events mark never covers a change the read models lack), with `more` when `continued` holds it;
 * then the answers. Returns what to fan
 * out: every private event (again when run again: consumers drop seqs they delivered), and each quote the read model
 * now shows (a replayed quote is older than the one shown, and must not reach clients as the latest; one an earlier
 * attempt wrote goes out again, since that attempt's fan-out may have failed).
 */
async function writeReadModelsAndAnswers(
  o: WorkerOptions,
  outputs: readonly EngineOutput[],
  continued: ReadonlySet<EngineOutput>,
): Promise<{ ok: true; fanout: EngineOutput[] } | { ok: false; error: Error }> {
  const pipe = o.writer.pipeline();
  const quoteWrites: [at: number, output: OutputOf<"quote_updated">][] = [];
  for (const output of outputs) {
    if (output.type === "quote_updated") quoteWrites.push([pipe.length, output]);
    queueOutputWrite(pipe, o.keys, output, continued.has(output));
  }
  for (const output of outputs) {
    if (output.type !== "order_response") continue;
    queueAnswer(
      pipe,
      o.keys.responseKey(output.userId, output.inputId),
      JSON.stringify(output.answer),
      o.responseTtlMs ?? 60_000,
    );
  }
  const results = (await pipe.exec()) ?? [];
  const error = results.find(([err]) => err !== null)?.[0];
  if (error) return { ok: false, error };
  // Written now (1); or written before (2), by an earlier attempt at this batch whose fan-out may have failed, and
  // still what the model shows unless a later quote of the batch replaced it.
  const lastOfAsset = new Map(quoteWrites.map(([, output]) => [output.asset, output]));
  const movedQuotes = new Set<EngineOutput>(
    quoteWrites
      .filter(([at, output]) => {
        const reply = results[at]?.[1];
        return reply === 1 || (reply === 2 && lastOfAsset.get(output.asset) === output);
      })
      .map(([, output]) => output),
  );
  return { ok: true, fanout: outputs.filter((output) => isPrivateOutput(output) || movedQuotes.has(output)) };
}

async function loadScripts(redis: Redis): Promise<void> {
  for (const script of [...READ_MODEL_SCRIPTS, ...EVENT_SCRIPTS]) await redis.script("LOAD", script);
}
