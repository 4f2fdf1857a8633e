/**
 * Each user's private events (the outputs that carry a per-user `seq`), kept in Redis so a stream client that lost
 * its connection resumes exactly after the last seq it saw, and the fan-out stream every stream replica reads.
 *
 * Store: `eventsKey(user)` is a sorted set scored by seq, each member "<log ms> <output JSON>" (log ms: the output
 * id's ms), the JSON with `"more":true` added when the event's engine step follows it with another event for the
 * same user (`eventMember`). `eventsSeqKey(user)` is the contiguous mark M: every event with seq ≤ M is stored (or
 * lost: EVENT_LOST), and, because the worker appends each event in the same script as that output's read-model write,
 * its read-model change is applied.
 * A batch claimed from a dead worker arrives after newer ones: its events fill a gap below events already stored.
 * Those newer ones wait in `eventsAheadKey(user)` (their seqs) until the gap fills, and the mark then moves over
 * them, so a reader never sees the mark claim an event that is not there. Seqs lost above a gap (EVENT_LOST) wait
 * apart, in `eventsLostKey(user)`: readers take the ahead set's highest seq for an event stored (`aheadSeq`), and a
 * lost seq is none.
 *
 * Appending is idempotent (a seq at or below the mark, or already stored, adds nothing: an engine replay or a claimed
 * batch stores each event once) and touches only keys in the user's hash tag (one cluster slot per script).
 * Retention: at least the newest EVENTS_KEEP_COUNT events and every event within EVENTS_KEEP_MS of log time of the
 * newest one; trimmed only once the set holds EVENTS_TRIM_ABOVE, so a trim removes a run and costs little per event.
 * A store with no new event for EVENTS_IDLE_TTL_MS expires (the mark stays).
 *
 * Fan-out (`streamFanout`) is written after the batch's read models, events and answers succeeded and before the
 * batch is acknowledged, so an event read from it is already in the store; the batch's quotes go out first, each
 * after its own read-model write, ahead of everything else in the batch (worker.ts says why only they may). It is at
 * least once: a batch run again (a crash before XACK, an engine replay) fans its events out again, and consumers drop
 * seqs they have delivered. An event can be fanned out above a gap (stored ahead of the mark): the late batch that
 * fills the gap fans out only its own events, so a consumer that saw a seq beyond the next one it expects reads the
 * rest from the store (readEventsAfter) once the mark has moved. One that did not see it (it listened later, or lost
 * fan-out entries) learns the highest seq stored above the gap from either read (`aheadSeq`).
 */
import { createHash } from "node:crypto";
import type { ChainableCommander, Redis } from "ioredis";
import type { Balances, EngineOutput, OrderView, PrivateOutput, TradeView } from "../contract/messages.ts";
import { STREAM_FANOUT_MAXLEN, type Keyspace } from "../contract/names.ts";

/** The newest events kept per user whatever their age. */
export const EVENTS_KEEP_COUNT = 1_000;
/** Every event this close (log time) to the user's newest one is kept, however many. */
export const EVENTS_KEEP_MS = 10 * 60_000;
/**
 * A user's store (events and the seqs waiting above a gap) expires after this long without an event, so users who
 * left do not keep a thousand events each for ever; the mark stays, and a client resuming later gets a resync.
 */
export const EVENTS_IDLE_TTL_MS = 24 * 60 * 60_000;
/** The set is trimmed only past this size: one trim removes up to a hundred events instead of one per append. */
export const EVENTS_TRIM_ABOVE = 1_100;

/**
 * How EVENT_APPEND and EVENT_LOST place a seq above the mark: the next one moves the mark over it and over every seq
 * waiting in the ahead (KEYS[3]) or lost (KEYS[4]) set right after it; any other waits in `waiting`, which expires
 * after `ttl` ms. Returns the mark.
 */
const PLACE_SEQ = `
local function placeSeq(seq, mark, waiting, ttl)
  if seq ~= mark + 1 then
    redis.call('ZADD', waiting, seq, tostring(seq))
    redis.call('PEXPIRE', waiting, ttl)
    return mark
  end
  mark = seq
  while redis.call('ZREM', KEYS[3], tostring(mark + 1)) == 1 or redis.call('ZREM', KEYS[4], tostring(mark + 1)) == 1 do
    mark = mark + 1
  end
  redis.call('SET', KEYS[2], tostring(mark))
  return mark
end
`;

/**
 * KEYS[1] events, KEYS[2] mark, KEYS[3] ahead, KEYS[4] lost (EVENT_LOST); ARGV[1] seq, ARGV[2] member
 * ("<log ms> <JSON>"), ARGV[3] keep count, ARGV[4] keep ms, ARGV[5] trim above, ARGV[6] idle ttl ms. Returns 1 when
 * stored, 0 when it was already (or is at or below the mark).
 *
 * The trim removes, oldest first, events beyond the newest `keep count` that are older than `keep ms` before the
 * newest event and at or below the mark (never one a gap still waits under). Log ms never decreases with seq (the
 * engine numbers outputs in log order), so the first event kept by time ends the run. The oldest is read first,
 * alone, then chunks: a user whose last ten minutes hold more than the threshold pays two one-member reads per
 * append (the newest and the oldest), not a read of the whole set.
 */
export const EVENT_APPEND = `${PLACE_SEQ}
local seq = tonumber(ARGV[1])
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq <= mark or redis.call('ZCOUNT', KEYS[1], seq, seq) > 0 then return 0 end
redis.call('ZADD', KEYS[1], seq, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
mark = placeSeq(seq, mark, KEYS[3], ARGV[6])
local card = redis.call('ZCARD', KEYS[1])
if card <= tonumber(ARGV[5]) then return 1 end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
local cutoff = tonumber(string.match(newest, '^(%d+) ')) - tonumber(ARGV[4])
local excess = card - tonumber(ARGV[3])
local drop, size = 0, 1
while drop < excess do
  local chunk = redis.call('ZRANGE', KEYS[1], drop, math.min(drop + size, excess) - 1, 'WITHSCORES')
  size = 64
  local stop = #chunk == 0
  for i = 1, #chunk, 2 do
    if tonumber(string.match(chunk[i], '^(%d+) ')) >= cutoff or tonumber(chunk[i + 1]) > mark then
      stop = true
      break
    end
    drop = drop + 1
  end
  if stop then break end
end
if drop > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, drop - 1) end
return 1`;

/**
 * KEYS[1] events, KEYS[2] mark, KEYS[3] ahead; ARGV[1] since, ARGV[2] limit. Returns {mark, members with scores,
 * the ahead set's highest seq ('0' when empty)}, the members for seqs in [since, min(mark, since + limit)]: the
 * events after `since`, led by the member at `since` itself when it is still kept (its `more` says whether the
 * engine step of the event a reader starts from goes on); no members when since is above the mark.
 */
const EVENTS_AFTER = `
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
local since = tonumber(ARGV[1])
local ahead = redis.call('ZRANGE', KEYS[3], -1, -1)[1] or '0'
if since > mark then return {tostring(mark), {}, ahead} end
local upto = math.min(mark, since + tonumber(ARGV[2]))
return {tostring(mark), redis.call('ZRANGEBYSCORE', KEYS[1], since, upto, 'WITHSCORES'), ahead}`;

/**
 * KEYS[1] balances, KEYS[2] open trades, KEYS[3] pending orders, KEYS[4] mark, KEYS[5] ahead, KEYS[6] events,
 * KEYS[7] lost: all of them at one instant. Returns {balances, open trades, pending orders (each HGETALL's flat
 * list), mark, the ahead set's highest seq ('0' when empty), the member stored at the mark, the member stored at the
 * ahead set's highest seq (each '' when there is none)}: their `more` says whether the mark, or the newest event the
 * read models reflect above a gap, sits inside an engine step.
 *
 * The ahead member is left out ('') when the seq after it is recorded lost: the step's next event could only be
 * that one, refused, so the step will never be stored whole and no reader gains by waiting for it. (At the mark a
 * lost next seq moves the mark onto itself, where no event is stored, to the same effect.)
 */
const PRIVATE_STATE = `
local mark = redis.call('GET', KEYS[4]) or '0'
local ahead = redis.call('ZRANGE', KEYS[5], -1, -1)[1] or '0'
local atAhead = ''
if ahead ~= '0' and not redis.call('ZSCORE', KEYS[7], tostring(tonumber(ahead) + 1)) then
  atAhead = redis.call('ZRANGEBYSCORE', KEYS[6], ahead, ahead)[1] or ''
end
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  mark,
  ahead,
  redis.call('ZRANGEBYSCORE', KEYS[6], mark, mark)[1] or '',
  atAhead
}`;

/**
 * KEYS[1] the fan-out stream; ARGV[1] its MAXLEN (approximate), then per entry its field count and its fields. XADDs
 * each entry in order: a batch's fan-out is one command (Upstash bills per command), its entries as they were.
 */
export const FANOUT_ADD = `
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1`;

/**
 * A seq whose event will never be stored: the worker refused its output (`bad_output_entry`). The mark moves over it
 * as over a stored event (at once, or once the gap below it fills), so the store is trimmed again and the user's later
 * events are read; a reader resuming below it finds the hole and gets a resync (readEventsAfter: `beyond_retention`),
 * which is the account as the read models hold it. A seq above the mark + 1 waits in the lost set, not the ahead set:
 * readers take the ahead set's highest seq for an event stored, so a seq the entry got wrong (it was refused for a
 * malformed body), far past the user's real ones, would hold every summary of the user back while the set lasts.
 * Apart, it changes nothing until the mark reaches it. KEYS as EVENT_APPEND's; ARGV[1] seq, ARGV[2] idle ttl ms.
 * Returns 1 when recorded, 0 when the seq is at or below the mark or stored.
 */
export const EVENT_LOST = `${PLACE_SEQ}
local seq = tonumber(ARGV[1])
local mark = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq <= mark or redis.call('ZCOUNT', KEYS[1], seq, seq) > 0 then return 0 end
placeSeq(seq, mark, KEYS[4], ARGV[2])
return 1`;

/** Scripts the worker loads (SCRIPT LOAD) with its read-model scripts, to send only their hashes with each write. */
export const EVENT_SCRIPTS = [EVENT_APPEND, FANOUT_ADD, EVENT_LOST] as const;

const SHA = new Map(
  [EVENT_APPEND, EVENTS_AFTER, PRIVATE_STATE, FANOUT_ADD, EVENT_LOST].map((script) => [
    script,
    createHash("sha1").update(script).digest("hex"),
  ]),
);

/** The output id's ms ("1795554219233-0:2" → "1795554219233"): when the input it answers entered the log. */
export function logMs(output: EngineOutput): string {
  const m = /^(\d+)-/.exec(output.id);
  if (m === null) throw new Error(`malformed output id ${output.id}`);
  return m[1]!;
}

/**
 * The stored member of one private event: "<log ms> <output JSON>", the JSON with `"more":true` when `more` (its
 * engine:output entry said `more 1`), so that a reader of the store, as one of the fan-out, holds the account summary
 * back until the step's last event (the mark can sit between the two: a worker's batch may end inside a step).
 *
 * Inside the JSON, not beside it, because the stores of a rolling deploy hold both formats: every reader takes the
 * log ms up to the first space (EVENT_APPEND's trim included) and parses the rest as JSON. A member without the
 * field (an older worker's) reads as no more. An older stream reader passes the field on in the event's frame while
 * the deploy lasts: one field more, which StreamClient does not read.
 */
export function eventMember(output: PrivateOutput, more: boolean): string {
  return `${logMs(output)} ${JSON.stringify(more ? { ...output, more: true } : output)}`;
}

/** EVENT_APPEND's KEYS and ARGV for one private event; `more`: see eventMember. */
export function eventAppendCall(
  keys: Keyspace,
  output: PrivateOutput,
  more = false,
): { keys: string[]; args: string[] } {
  const { userId, seq } = output;
  return {
    keys: [keys.eventsKey(userId), keys.eventsSeqKey(userId), keys.eventsAheadKey(userId), keys.eventsLostKey(userId)],
    args: [
      String(seq),
      eventMember(output, more),
      String(EVENTS_KEEP_COUNT),
      String(EVENTS_KEEP_MS),
      String(EVENTS_TRIM_ABOVE),
      String(EVENTS_IDLE_TTL_MS),
    ],
  };
}

/**
 * Queues the store write of one private event alone (EVALSHA: load EVENT_SCRIPTS first). The worker appends an event
 * in the same script as its output's read-model write (read-models.ts, queueOutputWrite), so the mark never runs
 * ahead of the read models.
 */
export function queueEventAppend(pipe: ChainableCommander, keys: Keyspace, output: PrivateOutput, more = false): void {
  const call = eventAppendCall(keys, output, more);
  pipe.evalsha(SHA.get(EVENT_APPEND)!, call.keys.length, ...call.keys, ...call.args);
}

/** Records each of `lost` (EVENT_LOST): a user's seq whose output the worker refused. Idempotent. */
export async function recordLostEvents(
  redis: Redis,
  keys: Keyspace,
  lost: readonly { userId: string; seq: number }[],
): Promise<void> {
  for (const { userId, seq } of lost) {
    const eventKeys = [
      keys.eventsKey(userId),
      keys.eventsSeqKey(userId),
      keys.eventsAheadKey(userId),
      keys.eventsLostKey(userId),
    ];
    await runScript(redis, EVENT_LOST, eventKeys, [String(seq), String(EVENTS_IDLE_TTL_MS)]);
  }
}

/**
 * Fans out, in one command, one entry per private event and quote in `outputs` (other outputs are skipped), then
 * one per candle row (worker/candles.ts supplies them), in that order; nothing when there are none.
 *
 * An event in `continued` (its engine:output entry said `more 1`: the same engine step follows it with another event
 * for the same user) carries `more: 1`: a stream replica sends the account summary after a step's last event, not
 * between a trade's opening and the balance change that pays for it (the summary in between would show money that
 * never was). The engine marks it, since only it sees every step whole; a worker's batch may end inside one.
 */
export async function fanOutEntries(
  redis: Redis,
  keys: Keyspace,
  outputs: readonly EngineOutput[],
  continued: ReadonlySet<EngineOutput>,
  candles: readonly unknown[] = [],
): Promise<void> {
  const args = [String(STREAM_FANOUT_MAXLEN)];
  const add = (...fields: string[]) => args.push(String(fields.length), ...fields);
  for (const output of outputs) {
    if (output.type === "quote_updated") add("kind", "quote", "body", JSON.stringify(output));
    else if (output.type !== "order_response") {
      const head = ["kind", "event", "user", output.userId, "seq", String(output.seq)];
      add(...head, ...(continued.has(output) ? ["more", "1"] : []), "body", JSON.stringify(output));
    }
  }
  for (const candle of candles) add("kind", "candle", "body", JSON.stringify(candle));
  if (args.length > 1) await runScript(redis, FANOUT_ADD, [keys.streamFanout], args);
}

export interface PrivateState {
  seq: number;
  /**
   * The highest seq stored above a gap (0 when there is none): events a reader must read once the gap fills, though
   * their fan-out came before it started listening.
   */
  aheadSeq: number;
  /**
   * The event at `seq` was stored with `more`: its engine step has another event for the user, not stored yet (a
   * worker's batch ended inside the step). A reader starting from `seq` holds the account summary back until it came.
   */
  markContinues: boolean;
  /**
   * The event at `aheadSeq` was stored with `more` and the seq after it is not recorded lost (StoredState says why
   * this is not the mark's).
   */
  aheadContinues: boolean;
  balances: Balances;
  trades: TradeView[];
  orders: OrderView[];
}

/** How a caller runs a script: EVALSHA, and EVAL on NOSCRIPT (ioredis here; the API's `ApiRedis.eval`). */
export type ScriptRunner = (script: string, keys: readonly string[], args: readonly string[]) => Promise<unknown>;

/**
 * A user's read models as the worker stores them (views as JSON by id) with the contiguous mark (`seq`), the
 * highest seq stored ahead of it (`aheadSeq`) and whether the event at each was stored with `more`
 * (`markContinues`, `aheadContinues`), all of one instant. The worker writes one script per output, so that instant
 * can fall inside an engine step: `seq` says which of the step's events it shows, `markContinues` that the step goes
 * on after it. While a dead worker's batch leaves a gap, the live worker writes the newer steps above it: the read
 * models then reflect events up to `aheadSeq`, and a step it is in the middle of shows only in `aheadContinues` (the
 * mark's event is an older step's), false when the step's next seq was refused and recorded lost (it never comes).
 * `insideStep` says whether either is so.
 */
export interface StoredState {
  seq: number;
  aheadSeq: number;
  markContinues: boolean;
  aheadContinues: boolean;
  balances: Balances;
  openTrades: Record<string, string>;
  pendingOrders: Record<string, string>;
}

/**
 * One atomic read (Lua, one hash tag) of the user's read models and marks, through `run`: the stream's snapshot
 * (readPrivateState) and the API's account summary, which combines keys that one step changes together.
 */
export async function readStoredState(run: ScriptRunner, keys: Keyspace, userId: string): Promise<StoredState> {
  const [balances, trades, orders, mark, ahead, atMark, atAhead] = (await run(
    PRIVATE_STATE,
    [
      keys.balancesKey(userId),
      keys.openTradesKey(userId),
      keys.pendingOrdersKey(userId),
      keys.eventsSeqKey(userId),
      keys.eventsAheadKey(userId),
      keys.eventsKey(userId),
      keys.eventsLostKey(userId),
    ],
    [],
  )) as [string[], string[], string[], string, string, string, string];
  return {
    seq: Number(mark),
    aheadSeq: Number(ahead),
    // Trimmed or expired (mark 0, or a store idle for a day): no step is still under way there.
    markContinues: atMark !== "" && parseMember(atMark).more,
    aheadContinues: atAhead !== "" && parseMember(atAhead).more,
    // fromEntries defines own properties, so a field named "__proto__" stays a field (as HGETALL's reply has it).
    balances: Object.fromEntries(pairs(balances)),
    openTrades: Object.fromEntries(pairs(trades)),
    pendingOrders: Object.fromEntries(pairs(orders)),
  };
}

/**
 * Whether a read of readStoredState landed inside an engine step whose next event is not stored yet: at the mark
 * (a worker's batch ended inside the step, or a claimed batch filling a gap is being written), or at the newest event
 * above a gap (the live worker writes newer steps there while a dead worker's batch waits to be claimed). Either way
 * the read models hold the step half applied. An event of a step inside the gap itself is not looked at: the rest of
 * that step comes with the claim, longer than any reader waits.
 */
export function insideStep(state: Pick<StoredState, "markContinues" | "aheadContinues">): boolean {
  return state.markContinues || state.aheadContinues;
}

/**
 * How a reader of readStoredState waits out an engine step its read landed inside (`insideStep`): a pause between
 * reads, doubling from firstPauseMs up to maxPauseMs, and at most maxWaitMs in all. Past it the state goes out as
 * read: a dead worker can hold the rest of a step until its entries are claimed, longer than any reader should wait.
 */
export interface StepWaitLimits {
  readonly firstPauseMs: number;
  readonly maxPauseMs: number;
  readonly maxWaitMs: number;
}

/**
 * Reads with `read` again while what it read is inside an engine step (`midStep`), with `pause` between reads (for
 * the ms it is given; it may end sooner), within `limits`. The last read, with `waitedMs` when the wait ran out and
 * that read is still inside the step (the caller logs it); undefined as soon as `read` answers so (it stopped).
 * The stream's snapshot and the API's account summary both wait this way.
 */
export async function readPastStep<S>(
  limits: StepWaitLimits,
  now: () => number,
  read: () => Promise<S | undefined>,
  midStep: (state: S) => boolean,
  pause: (state: S, ms: number) => Promise<void>,
): Promise<{ state: S; waitedMs: number | undefined } | undefined> {
  const startMs = now();
  let pauseMs = limits.firstPauseMs;
  for (;;) {
    const state = await read();
    if (state === undefined) return undefined;
    if (!midStep(state)) return { state, waitedMs: undefined };
    const waitedMs = now() - startMs;
    if (waitedMs >= limits.maxWaitMs) return { state, waitedMs };
    await pause(state, Math.min(pauseMs, limits.maxWaitMs - waitedMs));
    pauseMs = Math.min(limits.maxPauseMs, pauseMs * 2);
  }
}

/**
 * The stream's snapshot (readStoredState). Every event ≤ seq is reflected. Events above seq may be reflected too
 * (applied, not yet under the mark); each carries a whole view (balances, a trade, an order), so a client applying
 * them again after this state ends where the read models are.
 * Trades oldest opened first, orders oldest placed first (as the REST API lists them).
 */
export async function readPrivateState(redis: Redis, keys: Keyspace, userId: string): Promise<PrivateState> {
  const state = await readStoredState((script, k, args) => runScript(redis, script, k, args), keys, userId);
  return {
    seq: state.seq,
    aheadSeq: state.aheadSeq,
    markContinues: state.markContinues,
    aheadContinues: state.aheadContinues,
    balances: state.balances,
    trades: Object.values(state.openTrades)
      .map((json) => JSON.parse(json) as TradeView)
      .sort((a, b) => compareByTime(a.openedAt, a.id, b.openedAt, b.id)),
    orders: Object.values(state.pendingOrders)
      .map((json) => JSON.parse(json) as OrderView)
      .sort((a, b) => compareByTime(a.placedAt, a.id, b.placedAt, b.id)),
  };
}

export type EventsAfter =
  | { ok: true; events: PrivateOutput[]; continued: number[]; mark: number; aheadSeq: number }
  | { ok: false; reason: "beyond_retention" | "ahead" };

/**
 * The user's events after `since`, ascending and contiguous: seq since+1 up to min(mark, since + limit), `mark`
 * the contiguous mark read with them (more follow when the last event's seq is below it); `continued` the seqs
 * stored with `more` (eventMember), whose engine step follows them with another event for the user: among the
 * events, and `since` itself when the event at it was (a reader resuming there, at the mark as well, is mid-step);
 * `aheadSeq` the highest seq stored above a gap (0 when there is none), read with them: a reader that missed those
 * events' fan-out learns that they are to come once the gap fills.
 * `ahead` when since is above the mark (the client saw a seq this store has not: another deployment's, or lost with
 * Redis); `beyond_retention` when since+1 has been trimmed. Either way the client needs a fresh snapshot.
 */
export async function readEventsAfter(
  redis: Redis,
  keys: Keyspace,
  userId: string,
  since: number,
  limit = 1000,
): Promise<EventsAfter> {
  if (!Number.isSafeInteger(since) || since < 0)
    throw new RangeError(`since: expected a whole number ≥ 0, received ${String(since)}`);
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new RangeError(`limit: expected a whole number ≥ 1, received ${String(limit)}`);
  const [markText, members, ahead] = (await runScript(
    redis,
    EVENTS_AFTER,
    [keys.eventsKey(userId), keys.eventsSeqKey(userId), keys.eventsAheadKey(userId)],
    [String(since), String(limit)],
  )) as [string, string[], string];
  const mark = Number(markText);
  if (since > mark) return { ok: false, reason: "ahead" };
  const events: PrivateOutput[] = [];
  const continued: number[] = [];
  let i = 0;
  // The member at `since` (none at 0, nor once trimmed): only its `more` is wanted.
  if (members.length >= 2 && Number(members[1]) === since) {
    if (parseMember(members[0]!).more) continued.push(since);
    i = 2;
  }
  for (; i + 1 < members.length; i += 2) {
    // Below the mark the stored seqs have no holes but the lost (EVENT_LOST) and the trimmed (trims only remove the
    // oldest): either way, since+1 is not to be had.
    if (Number(members[i + 1]) !== since + events.length + 1) break;
    const { event, more } = parseMember(members[i]!);
    if (more) continued.push(event.seq);
    events.push(event);
  }
  if (since < mark && events.length === 0) return { ok: false, reason: "beyond_retention" };
  return { ok: true, events, continued, mark, aheadSeq: Number(ahead) };
}

/** A stored member (eventMember): its output, and its `more` (false for a member an older worker stored without it). */
function parseMember(member: string): { event: PrivateOutput; more: boolean } {
  const { more, ...event } = JSON.parse(member.slice(member.indexOf(" ") + 1)) as PrivateOutput & { more?: unknown };
  return { event, more: more === true };
}

/** EVALSHA, and EVAL when Redis does not have the script (first use, or after a restart). */
async function runScript(
  redis: Redis,
  script: string,
  keys: readonly string[],
  args: readonly string[] = [],
): Promise<unknown> {
  try {
    return await redis.evalsha(SHA.get(script)!, keys.length, ...keys, ...args);
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
    return redis.eval(script, keys.length, ...keys, ...args);
  }
}

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

/** By time (ISO strings sort as text), then by id: "T0-9" before "T0-10". */
function compareByTime(timeA: string, idA: string, timeB: string, idB: string): number {
  if (timeA !== timeB) return timeA < timeB ? -1 : 1;
  const [shardA, nA] = idA.slice(1).split("-").map(Number);
  const [shardB, nB] = idB.slice(1).split("-").map(Number);
  return shardA! - shardB! || nA! - nB! || (idA < idB ? -1 : idA > idB ? 1 : 0);
}
