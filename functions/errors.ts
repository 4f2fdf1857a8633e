/**
 * Every error the API answers with: one catalogue of codes, each mapped to its HTTP status in one table, and one
 * error type that routes throw. The app's error handler (app.ts) turns an ApiError into
 * `{"error": {"code", "message"}}` (plus its `extra` fields: the current state a 409 shows) and anything else into a bare 500 (503 when a backing service is unreachable),
 * so no stack trace or internal detail ever reaches a client.
 *
 * The engine's refusals (contract/rejections.ts) are answered with their own codes (rejectionStatus): 404 for a
 * trade or account that is unknown or not the user's, like any other resource; 400 for an instruction the engine
 * found malformed (INVALID_INSTRUCTION, INVALID_AMOUNT, UNKNOWN_ASSET), as the API's own checks would; 422 for the
 * rest, requests understood but refused.
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { RejectionCode } from "../contract/rejections.ts";

/**
 * Retry-After of a 503 UNAVAILABLE, in seconds (RFC 9110 §10.2.3): Redis, Postgres or the email provider failed. What
 * fails is restarted and reconnected to in seconds (docs/operations.md, Recovery: a server `npm start` runs is started
 * again within about a second, then backing off from 1 s; the components reconnect by themselves), so a few seconds:
 * long enough not to hammer a service on its way back, short enough for a trader. An error that knows better carries
 * its own (backend-failure.ts retryAfterSeconds).
 */
export const UNAVAILABLE_RETRY_AFTER_S = 5;

/**
 * Retry-After of a 503 ENGINE_UNAVAILABLE: no engine held the lease. The hot standby takes it within
 * ENGINE_LEASE_TTL_MS plus a poll (550 ms by default), and one second is the smallest wait the header can say.
 */
export const ENGINE_UNAVAILABLE_RETRY_AFTER_S = 1;

export const API_ERRORS = {
  MALFORMED_JSON: { status: 400, message: "The body is not valid JSON." },
  INVALID_REQUEST: { status: 400, message: "The request does not match the API contract." },
  INVALID_AMOUNT: { status: 400, message: "The amount is not a valid positive decimal at this asset's precision." },
  UNKNOWN_ASSET: { status: 400, message: "The asset is not traded here." },
  INVALID_IDEMPOTENCY_KEY: {
    status: 400,
    message: "Idempotency-Key must be 1 to 128 printable ASCII characters without spaces.",
  },
  INVALID_CURSOR: {
    status: 400,
    message: "The cursor is not a position in the history; pass nextCursor back as it came.",
  },
  INCOMPLETE_BODY: { status: 400, message: "The connection closed before the request body was complete." },
  UNAUTHENTICATED: {
    status: 401,
    message: "Sign in first: send the session cookie, or the session token as Authorization: Bearer <token>.",
  },
  INVALID_TOKEN: {
    status: 401,
    message: "The sign-in link is invalid, used or expired; ask for a new one with POST /api/v1/auth {email}.",
  },
  FORBIDDEN_ORIGIN: {
    status: 403,
    message: "Requests from this origin are not allowed: it must be APP_URL's or listed in CORS_ORIGINS.",
  },
  FORBIDDEN_HOST: { status: 403, message: "This development server does not answer to this Host." },
  NOT_FOUND: { status: 404, message: "Not found." },
  METHOD_NOT_ALLOWED: { status: 405, message: "This path does not take this method." },
  IDEMPOTENCY_CONFLICT: {
    status: 409,
    message: "This Idempotency-Key was used with a different request body; use a new key for a different request.",
  },
  ORDER_NOT_PENDING: { status: 409, message: "The order is no longer pending; its current state is in `order`." },
  TRADE_CLOSED: { status: 409, message: "The trade is already closed; its close is in `trade`." },
  PAYLOAD_TOO_LARGE: { status: 413, message: "The body is over the limit of 16,384 bytes (16 KiB)." },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "Send JSON (Content-Type: application/json)." },
  RATE_LIMITED: { status: 429, message: "Too many requests; try again after Retry-After seconds." },
  INTERNAL: { status: 500, message: "Something went wrong on our side." },
  UNAVAILABLE: {
    status: 503,
    message: "A backing service is unavailable; try again after Retry-After seconds.",
    retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_S,
  },
  ENGINE_UNAVAILABLE: {
    status: 503,
    message: "The trading engine is not running; try again after Retry-After seconds.",
    retryAfterSeconds: ENGINE_UNAVAILABLE_RETRY_AFTER_S,
  },
  ENGINE_TIMEOUT: {
    status: 504,
    message: "The trading engine did not answer in time; the request may still be carried out.",
  },
} as const satisfies Record<string, { status: ContentfulStatusCode; message: string; retryAfterSeconds?: number }>;

/**
 * ENGINE_TIMEOUT on a trade POST, by whether the request carried an Idempotency-Key (docs/api.md, Idempotency-Key).
 * With one, the same request again gets the first answer and acts once. Without, it would be a second action, which
 * the engine may carry out besides the first one, also after this answer: the client must look before it sends again.
 */
export const ENGINE_TIMEOUT_WITH_KEY =
  "The trading engine did not answer in time; the request may still be carried out. Send it again with the same " +
  "Idempotency-Key and body: it is carried out once, and you get its answer.";
export const ENGINE_TIMEOUT_WITHOUT_KEY =
  "The trading engine did not answer in time; the request may still be carried out, also after this answer. Sent " +
  "again without an Idempotency-Key it is a second request: first look for its effect (GET /api/v1/trade/open, " +
  "/api/v1/trade/orders, /api/v1/account/balance). Send an Idempotency-Key to retry safely.";

export type ApiErrorCode = keyof typeof API_ERRORS;

/**
 * UNAUTHENTICATED when a session was sent but does not hold (the catalogue's message is for none sent): same code,
 * since the client's remedy is the same, but a client that did send one learns that signing in again is the fix.
 */
export const SESSION_NOT_VALID =
  "The session is not valid: it expired, was signed out or is not one this API issued. Sign in again.";
/** UNAUTHENTICATED when an Authorization header came in another form than a Bearer token. */
export const AUTHORIZATION_NOT_BEARER = "Authorization: expected Bearer <session token>; no other scheme is taken.";

export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  /** The answer's headers: those given, and the catalogue's Retry-After for a code that has one. */
  readonly headers: Record<string, string>;
  constructor(
    readonly code: ApiErrorCode | RejectionCode,
    message?: string,
    headers: Record<string, string> = {},
    /** Fields the error body carries beside `error` (a 409's current state). */
    readonly extra: Record<string, unknown> = {},
  ) {
    const known: { status: ContentfulStatusCode; message: string; retryAfterSeconds?: number } | undefined =
      code in API_ERRORS ? API_ERRORS[code as ApiErrorCode] : undefined;
    super(message ?? known?.message ?? code);
    this.status = known?.status ?? rejectionStatus(code as RejectionCode);
    const retryAfter = known?.retryAfterSeconds;
    this.headers = retryAfter === undefined ? headers : { "Retry-After": String(retryAfter), ...headers };
  }
}

/** A refusal from the engine: the user's own request was understood but cannot be carried out. */
export function rejectionStatus(code: RejectionCode): ContentfulStatusCode {
  if (code === "TRADE_NOT_FOUND" || code === "ORDER_NOT_FOUND" || code === "ACCOUNT_NOT_FOUND") return 404;
  if (code === "INVALID_INSTRUCTION" || code === "INVALID_AMOUNT" || code === "UNKNOWN_ASSET") return 400;
  return 422;
}

export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}
