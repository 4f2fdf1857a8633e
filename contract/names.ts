/**
 * Every Redis stream and key name, in one place. Names carry the engine shard in a hash tag (`{0}`) so that one
 * shard's keys land in one Redis Cluster slot when the engine shards by user (docs/architecture.md). A `prefix` puts a whole
 * deployment (or one test run) in its own keyspace on a shared Redis.
 */

export interface Keyspace {
  /** The one ordered log: prices and user instructions. Source of truth for replay. */
  readonly input: string;
  /** What the engine decided: responses, closed orders, read-model changes. */
  readonly output: string;
  /** Consumer group of the workers on `output`. */
  readonly workerGroup: string;
  /**
   * Ranges of `output` the workers acknowledged while Postgres was down, whose Postgres writes (history, candles) wait
   * for it to come back (worker/postgres-backlog.ts). Beside `output`, in its hash tag: one script touches both.
   */
  readonly postgresBacklog: string;
  /** The entries `postgresBacklog`'s ranges count, added up, kept by the scripts that add and remove them. */
  readonly postgresBacklogEntries: string;
  /** Lease of the one worker catching the Postgres backlog up (value: its token). */
  readonly postgresCatchUpLease: string;
  /** Lease that lets exactly one engine apply `input` (value: holder and fencing token). */
  readonly engineLease: string;
  /** Counter that issues the lease's fencing tokens. */
  readonly engineFence: string;
  /** Id of the last input whose outputs are published; snapshots never go past it. */
  readonly enginePublished: string;
  /**
   * Key a worker writes an instruction's answer to; the function that sent it waits on it. Named by the instruction's
   * input entry id (what XADD returned), not its request id: each attempt gets its own key, so a retry with the same
   * request id never reads an answer left over from an earlier attempt that timed out.
   */
  responseKey(userId: string, inputId: string): string;
  /** Read models the worker keeps current, so queries never enter the log. */
  balancesKey(userId: string): string;
  openTradesKey(userId: string): string;
  /** A user's pending entry orders: order id → the order's view (JSON), while it is on the book. */
  pendingOrdersKey(userId: string): string;
  readonly quotesKey: string;
  /**
   * A user's private events (every output with a per-user `seq`), kept for resume: a sorted set scored by `seq`,
   * each member "<log ms> <output JSON>". The worker trims it to at least the last 1,000 and the last 10 minutes.
   */
  eventsKey(userId: string): string;
  /** The highest `seq` up to which every event of the user is in `eventsKey` (and in the read models). */
  eventsSeqKey(userId: string): string;
  /** Seqs already stored above the contiguous mark, waiting for the gap below them to fill (a claimed batch). */
  eventsAheadKey(userId: string): string;
  /**
   * Seqs above the contiguous mark that the worker refused (lost: it never stores them), for the mark to move over
   * once the gap below them fills. Apart from `eventsAheadKey`, which readers take for events stored ahead.
   */
  eventsLostKey(userId: string): string;
  /**
   * What the worker fans out to every stream replica after it stored it: quotes, candles, private events and
   * session revocations, one Redis stream read by each replica from its live end (XREAD, no group), trimmed.
   */
  readonly streamFanout: string;
  /** A WebSocket ticket (single use, ~30 s): the SHA-256 of the ticket → who it was issued to. */
  streamTicketKey(ticketHash: string): string;
  /** The API's keys. Per-user ones share the user's hash tag, so one script touches one cluster slot. */
  sessionRevokedKey(userId: string, sessionId: string): string;
  /** A user's sessions: session id → its expiry (seconds), for signing them all out; expired ones are dropped. */
  sessionsKey(userId: string): string;
  /**
   * When the user last signed out everywhere (ms since the epoch), kept as long as a sign-in link lives: a link issued
   * before it signs in no session.
   */
  signedOutEverywhereKey(userId: string): string;
  /**
   * A fixed-window request counter: `scope` names the limit, `subject` whom it counts (a user, an IP, or an email
   * inbox's SHA-256: no address in a key name). The subject is the hash tag.
   */
  rateLimitKey(scope: string, subject: string): string;
  /** A user's Idempotency-Key records: key hash → hash of the body it was first used with, and the path it was on. */
  idempotencyRecords(userId: string): string;
  /** The same records' key hashes by when each was first used (ms): the oldest go past the per-user cap. */
  idempotencyOrder(userId: string): string;
  /** Sign-in emails kept for local development when no email provider is configured. */
  readonly devMailbox: string;
}

/** The fan-out stream's approximate cap (`XADD … MAXLEN ~`): far more than a stream replica reads between two XREADs. */
export const STREAM_FANOUT_MAXLEN = 100_000;

export function keyspace(prefix = "", shard = 0): Keyspace {
  const tag = `{${shard}}`;
  return {
    input: `${prefix}engine:${tag}:input`,
    output: `${prefix}engine:${tag}:output`,
    workerGroup: "workers",
    postgresBacklog: `${prefix}engine:${tag}:output:postgres-backlog`,
    postgresBacklogEntries: `${prefix}engine:${tag}:output:postgres-backlog-entries`,
    postgresCatchUpLease: `${prefix}engine:${tag}:output:postgres-catch-up`,
    engineLease: `${prefix}engine:${tag}:lease`,
    engineFence: `${prefix}engine:${tag}:fence`,
    enginePublished: `${prefix}engine:${tag}:published`,
    responseKey: (userId, inputId) => `${prefix}response:{${userId}}:${inputId}`,
    balancesKey: (userId) => `${prefix}account:{${userId}}:balances`,
    openTradesKey: (userId) => `${prefix}account:{${userId}}:open-trades`,
    pendingOrdersKey: (userId) => `${prefix}account:{${userId}}:pending-orders`,
    quotesKey: `${prefix}{quotes}:latest`,
    eventsKey: (userId) => `${prefix}account:{${userId}}:events`,
    eventsSeqKey: (userId) => `${prefix}account:{${userId}}:events-seq`,
    eventsAheadKey: (userId) => `${prefix}account:{${userId}}:events-ahead`,
    eventsLostKey: (userId) => `${prefix}account:{${userId}}:events-lost`,
    streamFanout: `${prefix}{stream}:fanout`,
    streamTicketKey: (ticketHash) => `${prefix}stream-ticket:{${ticketHash}}`,
    sessionRevokedKey: (userId, sessionId) => `${prefix}api:{${userId}}:revoked:${sessionId}`,
    sessionsKey: (userId) => `${prefix}api:{${userId}}:sessions`,
    signedOutEverywhereKey: (userId) => `${prefix}api:{${userId}}:signed-out-everywhere`,
    rateLimitKey: (scope, subject) => `${prefix}api:{${subject}}:rate:${scope}`,
    idempotencyRecords: (userId) => `${prefix}api:{${userId}}:idem`,
    idempotencyOrder: (userId) => `${prefix}api:{${userId}}:idem-order`,
    devMailbox: `${prefix}api:dev-mailbox`,
  };
}
