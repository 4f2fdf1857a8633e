/**
 * Magic-link tokens (docs/api.md, sign-in): 256 random bits, base64url, stored only as their SHA-256 in Postgres, valid for
 * 15 minutes by the database clock, and used at most once. Checking and consuming are separate steps so that the
 * sign-in can do its work (create the user, have the engine grant the balance) in between: if that fails (engine
 * down), the link still works on a retry; if two requests race with one link, only one consumes it. Using a link
 * voids the other unused links of its address: a link is an open door to the account until it expires, and an older
 * one may sit in a mailbox someone else reads. Signing out everywhere voids them too, in Redis (auth/sessions.ts): a
 * link issued before it signs in no session, as a Postgres outage must not hold up signing out.
 */
import { createHash, randomBytes } from "node:crypto";
import { postgresErrorCode } from "../../platform/postgres-errors.ts";
import type { Queryable } from "../../platform/postgres.ts";

export const SIGN_IN_TOKEN_TTL_MINUTES = 15;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export async function issueSignInToken(db: Queryable, email: string): Promise<string> {
  const token = randomBytes(32).toString("base64url");
  await db.query("DELETE FROM sign_in_tokens WHERE expires_at < now() - interval '1 day'");
  await db.query(
    `INSERT INTO sign_in_tokens (token_hash, email, expires_at) VALUES ($1, $2, now() + make_interval(mins => $3))`,
    [hashToken(token), email, SIGN_IN_TOKEN_TTL_MINUTES],
  );
  return token;
}

/**
 * The email a valid, unused, unexpired token was issued for, when it was issued (ms since the epoch, by the database
 * clock), and the id of the user with that email, if there is one yet; undefined for anything else.
 */
export async function checkSignInToken(
  db: Queryable,
  token: string,
): Promise<{ email: string; issuedAtMs: number; userId: string | undefined } | undefined> {
  if (!TOKEN_SHAPE.test(token)) return undefined;
  const { rows } = await db.query<{ email: string; issued_at_ms: number | string; user_id: string | null }>(
    `SELECT t.email, u.id::text AS user_id,
            floor(extract(epoch FROM t.expires_at - make_interval(mins => $2)) * 1000)::float8 AS issued_at_ms
       FROM sign_in_tokens t LEFT JOIN users u ON u.email = t.email
       WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now()`,
    [hashToken(token), SIGN_IN_TOKEN_TTL_MINUTES],
  );
  const row = rows[0];
  return row && { email: row.email, issuedAtMs: Number(row.issued_at_ms), userId: row.user_id ?? undefined };
}

/**
 * $1 a token's hash, $2 the session signing in with it: marks it used by that session, and every other unused token
 * of its address used (by none). It finds an address's unused links by `email = … AND used_at IS NULL`, which is
 * what the partial index sign_in_tokens_unused_email (migrations/011_sign_in_tokens_unused_email.sql) holds:
 * exported for the test that checks its plan uses it.
 */
export const CONSUME_SIGN_IN_TOKEN = `UPDATE sign_in_tokens
     SET used_at = now(), session_id = CASE WHEN token_hash = $1 THEN $2::text END
     WHERE used_at IS NULL AND email = (
       SELECT email FROM sign_in_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
     )
     RETURNING token_hash = $1 AS consumed`;

/**
 * CONSUME_SIGN_IN_TOKEN without the session, for a schema before migrations/013_sign_in_tokens_session.sql: during a
 * deploy the functions may switch before any container has run it (docs/operations.md, Deploying).
 */
const CONSUME_SIGN_IN_TOKEN_UNRECORDED = `UPDATE sign_in_tokens SET used_at = now()
     WHERE used_at IS NULL AND email = (
       SELECT email FROM sign_in_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
     )
     RETURNING token_hash = $1 AS consumed`;

/** SQLSTATE undefined_column: the code of node-postgres's error and of Neon's NeonDbError over HTTP alike. */
const UNDEFINED_COLUMN = "42703";

/**
 * Marks the token used by `sessionId`, and every other unused token of its address; false when it was used, voided
 * or expired in the meantime. One statement: two links of one address used at once lock their rows in the same order
 * (no deadlock), and the second finds its own voided.
 */
export async function consumeSignInToken(db: Queryable, token: string, sessionId: string): Promise<boolean> {
  const hash = hashToken(token);
  const { rows } = await db
    .query<{ consumed: boolean }>(CONSUME_SIGN_IN_TOKEN, [hash, sessionId])
    .catch((err: unknown) => {
      if (postgresErrorCode(err) !== UNDEFINED_COLUMN) throw err;
      return db.query<{ consumed: boolean }>(CONSUME_SIGN_IN_TOKEN_UNRECORDED, [hash]);
    });
  return rows.some((row) => row.consumed);
}

/**
 * Whether `sessionId` used the token up: asked after a consume whose answer never came, which may have committed.
 * FOR UPDATE waits for a consume still holding the row, and then reads what it wrote. Another session's sign-in, or
 * none, is false: a link signs in one session at most.
 */
export async function consumedBy(db: Queryable, token: string, sessionId: string): Promise<boolean> {
  const { rows } = await db.query("SELECT 1 FROM sign_in_tokens WHERE token_hash = $1 AND session_id = $2 FOR UPDATE", [
    hashToken(token),
    sessionId,
  ]);
  return rows.length > 0;
}

/** Finds or creates the user with this (lower-cased) email. */
export async function ensureUser(db: Queryable, email: string): Promise<{ id: string; email: string }> {
  const { rows } = await db.query<{ id: string; email: string }>(
    "INSERT INTO users (email) VALUES ($1) ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id::text, email",
    [email],
  );
  return rows[0]!;
}

function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
