/**
 * What the API hands the stream process (stream/, docs/stream.md) through Redis: WebSocket tickets, and the notice
 * that a session was revoked.
 *
 * A ticket stands in for the session on the socket's upgrade request, so the session token never appears in a URL
 * (where proxies and logs keep it). It is 256 random bits, stored only as its SHA-256 (hex) under
 * `streamTicketKey`, for 30 s; the stream process consumes it with GETDEL, so it works once. The stored value says
 * whom it was issued to: `{"userId", "sessionId", "sessionExpiresAtMs"}`, so the socket can end with the session.
 *
 * A logout appends `kind revoked body {"userId", "sessionId"}` to `streamFanout`, which every stream replica reads,
 * so the session's sockets close within moments. It goes out after the revocation is recorded: a replica that
 * checks the revocation key on the notice finds it set.
 */
import { createHash, randomBytes } from "node:crypto";
import { STREAM_FANOUT_MAXLEN, type Keyspace } from "../../contract/names.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import type { Session } from "./sessions.ts";

export const STREAM_TICKET_TTL_MS = 30_000;

/**
 * Every ticket's shape, as issueStreamTicket makes it: 32 random bytes in base64url without padding, 43 characters.
 * The stream refuses any other text without a Redis command: anyone can send one, and Redis may bill per command.
 */
export const STREAM_TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** The value stored under a ticket's key: the stream process reads it on the upgrade. */
export interface StreamTicketGrant {
  readonly userId: string;
  readonly sessionId: string;
  /** When the session the ticket was issued for expires (ms since the epoch): the socket closes then (4401). */
  readonly sessionExpiresAtMs: number;
}

export function streamTicketHash(ticket: string): string {
  return createHash("sha256").update(ticket).digest("hex");
}

/** Issues a ticket for `session`; returns it and when it expires (ms since the epoch). */
export async function issueStreamTicket(
  redis: ApiRedis,
  keys: Keyspace,
  session: Session,
  nowMs: number,
): Promise<{ ticket: string; expiresAtMs: number }> {
  const ticket = randomBytes(32).toString("base64url");
  const grant: StreamTicketGrant = {
    userId: session.userId,
    sessionId: session.sessionId,
    sessionExpiresAtMs: session.expiresAt * 1000,
  };
  await redis.set(keys.streamTicketKey(streamTicketHash(ticket)), JSON.stringify(grant), STREAM_TICKET_TTL_MS);
  return { ticket, expiresAtMs: nowMs + STREAM_TICKET_TTL_MS };
}

/**
 * KEYS[1] streamFanout; ARGV[1] MAXLEN, ARGV[2] body. A script rather than a bare XADD: the ApiRedis interface has
 * no XADD, and EVAL runs alike over TCP and Upstash's REST API.
 */
const ANNOUNCE_REVOKED = `
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'kind', 'revoked', 'body', ARGV[2])`;

/** Tells every stream replica that `session` is revoked (call after Sessions.revoke). */
export async function announceRevoked(redis: ApiRedis, keys: Keyspace, session: Session): Promise<void> {
  const body = JSON.stringify({ userId: session.userId, sessionId: session.sessionId });
  await redis.eval(ANNOUNCE_REVOKED, [keys.streamFanout], [String(STREAM_FANOUT_MAXLEN), body]);
}
