/**
 * The Postgres backlog: the parts of engine:output whose Postgres writes (history, candles) have not run because
 * Postgres was down when their batch was handled. Trading needs only Redis, so a worker does not hold a batch's
 * answers, read models and events behind Postgres (worker.ts): it records the batch's range here, handles the batch's
 * Redis part, and acknowledges it. Once Postgres answers again, a worker writes what is owed (catchUp) and removes
 * each range once its writes succeeded.
 *
 * Why not leave such batches pending in the group until Postgres is back: Upstash refuses a group read that would
 * take a consumer past 1,000 pending entries (worker.ts), so a worker could go on for two batches at most; and
 * entries pending for longer than the claim period are taken by other workers' claims, which would find Postgres
 * down too and hold them in their own lists. The backlog has no such limit, and belongs to no worker: any worker
 * catches it up, one at a time under a lease, a restarted one included, and one that dies under it leaves what it
 * had not written for the next.
 *
 * The range is owed before any of the batch's answers goes out, and the batch acknowledged after its Redis part (two
 * scripts, owe and oweAndAcknowledge), so that at every moment each entry is pending in the group, owed here, or
 * acknowledged and handled whole: a worker killed between any two steps leaves its batch pending (and owed, from the
 * first script on), for a restart or a claim to handle again, the range written once or twice (idempotent). Owing
 * first is what the API counts on: a refusal whose target moved on in rows not written yet is told apart from one
 * whose target was never the user's by whether anything is owed (functions/routes/trade-terms.ts), so an answer must
 * never be readable while its batch's rows are neither written nor owed.
 *
 * Store: a sorted set (`keys.postgresBacklog`), one member per batch, "<first id> <last id> <entries>", scored by the
 * first id's ms; beside it the entries of its ranges, added up (`keys.postgresBacklogEntries`, COUNT below). A batch
 * read by a group read is a run of the stream; one claimed or taken from a consumer's pending list may have gaps,
 * whose entries catchUp writes too: every Postgres write is idempotent (history-writes.ts, candles.ts), and none
 * depends on the order of batches, so a range written twice, or after later batches, or by two workers at once, ends
 * as if written once in log order (a lease that ran out under a slow worker lets two write at once). The trim of
 * engine:output (worker.ts, TRIM_HANDLED) keeps every entry from the oldest owed range's first on, so nothing owed
 * is trimmed before it is written.
 *
 * A reader of the rows does depend on their being written: the API's 409 to a cancel, close or modify whose target
 * moved on is built from them, so while a row is missing and any range is owed it answers 503 instead
 * (functions/routes/trade-terms.ts).
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { EngineOutput } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { decodeOutputFields } from "../contract/stream-fields.ts";
import { isAfterId } from "../engine/core/step.ts";
import type { Logger } from "../platform/log.ts";

/**
 * Lua the scripts below share; each sets `backlog` and `counted` (the backlog's count, `keys.postgresBacklogEntries`)
 * first. The count is kept by the scripts that add and remove ranges, so that reading it (every worker's stats, while
 * some may be owed) does not go over every range: a long outage owes hundreds of thousands, and a script reading them
 * all blocks Redis meanwhile. It is missing while nothing is owed (the last range's removal deletes it), and once after
 * an upgrade that found ranges owed without it: then it is counted, once, by the first script that needs it.
 */
const COUNT = `
local function entriesOf(member) return tonumber(string.match(member, ' (%d+)$')) end
local function count()
  local total = redis.call('GET', counted)
  if total then return tonumber(total) end
  total = 0
  for _, member in ipairs(redis.call('ZRANGE', backlog, 0, -1)) do total = total + entriesOf(member) end
  if total > 0 then redis.call('SET', counted, total) end
  return total
end
-- Adds a range unless it is owed already (by this worker's earlier script, or another's of the same batch): counted
-- once. Returns whether it added it.
local function owe(member, score)
  if redis.call('ZSCORE', backlog, member) then return false end
  redis.call('ZADD', backlog, score, member)
  redis.call('INCRBY', counted, entriesOf(member))
  return true
end
-- Counted off only by the call that removed it: two lanes settling one range take its entries off once.
local function settle(member)
  if redis.call('ZREM', backlog, member) == 1 then redis.call('DECRBY', counted, entriesOf(member)) end
end
local function forgetCountIfNoneOwed()
  if redis.call('ZCARD', backlog) == 0 then redis.call('DEL', counted) end
end
`;

/** KEYS[1] the backlog, KEYS[2] its count; ARGV[1] the member, ARGV[2] its score. Owes the range. */
const OWE = `
local backlog, counted = KEYS[1], KEYS[2]
${COUNT}
count()
owe(ARGV[1], ARGV[2])`;

/**
 * KEYS[1] engine:output, KEYS[2] the backlog, KEYS[3] its count; ARGV[1] the group, ARGV[2] the member, ARGV[3] its
 * score, ARGV[4..] the ids. Owes the ids' range unless it is owed still (the batch's OWE ran before its answers; a
 * catch-up may have written and settled the range since, and owing it again only writes it again), then acknowledges
 * them; if none was still pending (another worker may have handled them whole since), takes back what it added, and
 * only that. Owed first: Redis does not undo a script that fails part way, and a refused ZADD after the XACK would
 * leave entries neither pending nor owed. Returns how many it acknowledged.
 */
const OWE_AND_ACK = `
local backlog, counted = KEYS[2], KEYS[3]
${COUNT}
count()
local existed = not owe(ARGV[2], ARGV[3])
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4))
if acked == 0 and not existed then
  settle(ARGV[2])
  forgetCountIfNoneOwed()
end
return acked`;

/** KEYS[1] the backlog, KEYS[2] its count; ARGV the members written. Removes them, each counted off once. */
const SETTLE = `
local backlog, counted = KEYS[1], KEYS[2]
${COUNT}
count()
for _, member in ipairs(ARGV) do settle(member) end
forgetCountIfNoneOwed()`;

/**
 * KEYS[1] the backlog, KEYS[2] its count. Returns the entries of every range owed, added up; never below 0 (a worker
 * of an older version, during a rolling upgrade, adds ranges without counting them).
 */
const OWED_ENTRIES = `
local backlog, counted = KEYS[1], KEYS[2]
${COUNT}
return math.max(0, count())`;

/** One owed range of engine:output. */
export interface OwedRange {
  readonly first: string;
  readonly last: string;
  readonly entries: number;
  /** As stored: what settles it. */
  readonly member: string;
}

/** The backlog's member for a batch of `ids` (not empty), and its score. */
function rangeOf(ids: readonly string[]): { member: string; score: string } {
  let first = ids[0]!;
  let last = first;
  for (const id of ids) {
    if (isAfterId(first, id)) first = id;
    if (isAfterId(id, last)) last = id;
  }
  return { member: `${first} ${last} ${ids.length}`, score: first.split("-")[0]! };
}

/**
 * Owes a batch whose Postgres writes wait for Postgres, before any of its answers goes out; acknowledged later, by
 * oweAndAcknowledge, once its Redis part is handled.
 */
export async function oweBatch(redis: Redis, keys: Keyspace, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const { member, score } = rangeOf(ids);
  await redis.eval(OWE, 2, keys.postgresBacklog, keys.postgresBacklogEntries, member, score);
}

/**
 * Acknowledges a batch whose Redis part was handled and whose Postgres writes wait for Postgres: owed (again, if a
 * catch-up wrote it since oweBatch), in the same script. Returns how many entries it acknowledged.
 */
export async function oweAndAcknowledge(redis: Redis, keys: Keyspace, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const { member, score } = rangeOf(ids);
  const acked = await redis.eval(
    OWE_AND_ACK,
    3,
    keys.output,
    keys.postgresBacklog,
    keys.postgresBacklogEntries,
    keys.workerGroup,
    member,
    score,
    ...ids,
  );
  return Number(acked);
}

/** The oldest `count` ranges owed (by their first id's ms), in no order of their own. */
async function oldestOwed(redis: Redis, keys: Keyspace, count: number): Promise<OwedRange[]> {
  const members = await redis.zrange(keys.postgresBacklog, "0", String(count - 1));
  return members.map((member) => {
    const [first, last, entries] = member.split(" ");
    return { first: first!, last: last!, entries: Number(entries), member };
  });
}

/** Entries owed in all, over every worker's ranges. */
export async function owedEntries(redis: Redis, keys: Keyspace): Promise<number> {
  return Number(await redis.eval(OWED_ENTRIES, 2, keys.postgresBacklog, keys.postgresBacklogEntries));
}

/** Removes ranges whose writes succeeded; a range another worker removed first is counted off once. */
export async function settleOwed(redis: Redis, keys: Keyspace, members: readonly string[]): Promise<void> {
  if (members.length === 0) return;
  await redis.eval(SETTLE, 2, keys.postgresBacklog, keys.postgresBacklogEntries, ...members);
}

/** Ranges a catch-up takes at a time, the oldest: read as one run of engine:output, settled together. */
const RANGES_PER_PASS = 100;

/**
 * How long the catch-up lease outlives its holder's last page. Renewed before each page, whose steps are bounded by
 * the watchdog (20 s each), so a live holder keeps it; a dead one's lane is free again this long after.
 */
const CATCH_UP_LEASE_MS = 60_000;

/** KEYS[1] the lease; ARGV[1] the holder's token, ARGV[2] ms. Renews it if still held by that token: 1, else 0. */
const RENEW_LEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

/** KEYS[1] the lease; ARGV[1] the holder's token. Deletes it if still held by that token. */
const RELEASE_LEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end`;

export interface CatchUp {
  readonly redis: Redis;
  readonly keys: Keyspace;
  /** Entries read and written at a time. */
  readonly pageSize: number;
  /** Bounds each step (worker.ts's watchdog). */
  readonly bound: <T>(work: Promise<T>) => Promise<T>;
  /**
   * One page's Postgres writes, and what follows from them (the candles' fan-out). `owed`: those of `outputs` in an
   * owed range (the others, between two ranges, had their writes made by their own batch).
   */
  readonly write: (outputs: readonly EngineOutput[], owed: ReadonlySet<EngineOutput>) => Promise<void>;
  readonly log: Logger;
  readonly stop: AbortSignal;
}

export interface CaughtUp {
  /** Entries this call wrote. */
  readonly entries: number;
  /** Whether it found nothing left owed; false after a stop, or while another worker catches up. */
  readonly caughtUp: boolean;
}

/**
 * Writes what is owed, under a lease (`keys.postgresCatchUpLease`): one worker at a time, since every worker that
 * wrote the backlog beside another would write it all again. Returns at once, nothing written, while another worker
 * holds it: a claim round's trim wakes the lane again (worker.ts) for as long as something is owed. Stops where it
 * is on a stop, or when its lease was lost (taken by another once it ran out), both looked at before each page: what
 * it had not written stays owed. Throws what a write throws, the ranges it was on owed still.
 */
export async function catchUp(c: CatchUp): Promise<CaughtUp> {
  const lease = c.keys.postgresCatchUpLease;
  const token = randomUUID();
  if ((await c.bound(c.redis.set(lease, token, "PX", CATCH_UP_LEASE_MS, "NX"))) === null)
    return { entries: 0, caughtUp: false };
  const held = async () => Number(await c.redis.eval(RENEW_LEASE, 1, lease, token, CATCH_UP_LEASE_MS)) === 1;
  let entries = 0;
  try {
    while (!c.stop.aborted) {
      const owed = await c.bound(oldestOwed(c.redis, c.keys, RANGES_PER_PASS));
      if (owed.length === 0) return { entries, caughtUp: true };
      const pass = await writeRanges(c, owed, () => c.bound(held()));
      entries += pass.entries;
      if (!pass.whole) break;
    }
    return { entries, caughtUp: false };
  } finally {
    // Not waited for: a stop must not wait on a Redis that is down (the watchdog would end the worker as stuck).
    // Commands go in order on the connection, so this lane's next SET NX comes after it; one that never reaches Redis
    // leaves the lease to run out by itself.
    void c.redis.eval(RELEASE_LEASE, 1, lease, token).catch(() => undefined);
  }
}

/**
 * Writes `owed`, a page at a time, as one run of engine:output from their lowest first id: ranges one batch each, a
 * long outage's are many, and each read and settled alone cost some commands and a Postgres write per range, however
 * few its entries. After each page, every range whose last id it reached is settled, together. A range that starts
 * past the page's end starts the next page, so the entries between two outages are not read; those between two
 * ranges within a page are written again, which does no harm (idempotent). A range whose first entry was not read
 * is gone from engine:output (nothing but the trim should remove it, and it keeps owed ranges): logged,
 * `postgres_backlog_missing`, and settled with what was left of it, its writes no longer possible. Returns the
 * entries written, and whether all of `owed` was: not after a stop or a lost lease (what was not written stays owed).
 */
async function writeRanges(c: CatchUp, owed: readonly OwedRange[], held: () => Promise<boolean>) {
  let left = [...owed];
  const lowestFirst = () => left.reduce((a, b) => (isAfterId(a, b.first) ? b.first : a), left[0]!.first);
  const highestLast = () => left.reduce((a, b) => (isAfterId(b.last, a) ? b.last : a), left[0]!.last);
  const unread = new Set(owed.map((range) => range.first));
  let entries = 0;
  let from = lowestFirst();
  while (left.length > 0) {
    if (c.stop.aborted || !(await held())) return { entries, whole: false };
    const to = highestLast();
    const page: [string, string[]][] = await c.bound(c.redis.xrange(c.keys.output, from, to, "COUNT", c.pageSize));
    const outputs: EngineOutput[] = [];
    const inOwed = new Set<EngineOutput>();
    for (const [id, fields] of page) {
      unread.delete(id);
      const decoded = decodeOutputFields(fields);
      // One that does not decode was logged (bad_output_entry) when its batch was handled.
      if (!decoded.ok) continue;
      outputs.push(decoded.message);
      if (left.some((range) => !isAfterId(range.first, id) && !isAfterId(id, range.last))) inOwed.add(decoded.message);
    }
    if (page.length > 0) await c.write(outputs, inOwed);
    entries += page.length;
    // A short page read all there is up to `to`.
    const end = page.length < c.pageSize ? to : page.at(-1)![0];
    const done = left.filter((range) => !isAfterId(range.last, end));
    for (const range of done)
      if (unread.has(range.first))
        c.log.error("postgres_backlog_missing", { first: range.first, last: range.last, entries: range.entries });
    await c.bound(
      settleOwed(
        c.redis,
        c.keys,
        done.map((range) => range.member),
      ),
    );
    left = left.filter((range) => isAfterId(range.last, end));
    if (left.length === 0) break;
    const next = lowestFirst();
    from = isAfterId(next, end) ? next : `(${end}`;
  }
  return { entries, whole: true };
}
