/**
 * A stand-in for Resend's `POST /emails`, for tests: the real `resend` client is pointed at it (`baseUrl`, or
 * RESEND_BASE_URL for whole processes) and it records what would have been sent. It answers the way the client
 * expects: `{ id }` on success, Resend's error shape `{ statusCode, name, message }` otherwise, and refuses these
 * cases as Resend documents them (resend.com/docs/api-reference/errors and .../emails/send-email):
 * - 401 `missing_api_key` without a Bearer key, 403 `invalid_api_key` for a key not shaped `re_…`;
 * - 400 `validation_error` for JSON it cannot read, and 422 `missing_required_field` without `from`, `to`,
 *   `subject` and a body;
 * - 422 `invalid_from_address` for a `from` not in the form `email@example.com` or `Name <email@example.com>`;
 * - 400 `validation_error` naming the field for a `to` address not in that form, and for more than 50 recipients
 *   (the errors page gives `validation_error` for a refused field as 400);
 * - 403 `validation_error` for Resend's testing sender (an address on resend.dev) to anyone but the Resend
 *   account's own address, `accountEmail` (the errors page: "You can only send testing emails to your own email
 *   address");
 * - with `requestsPerSecond` set, 429 `rate_limit_exceeded` with `retry-after` and the `ratelimit-*` headers past
 *   that many requests in a second (resend.com/changelog/api-rate-limit: 2 per second by default, which
 *   RESEND_DEFAULT_REQUESTS_PER_SECOND holds). Unset, no limit: tests send their sign-ins in bursts.
 * It does not model everything Resend checks, so a request it takes may still be refused by Resend:
 * - any sender off resend.dev counts as on a verified domain, where Resend answers 403 `validation_error` ("The
 *   domain.com domain is not verified") for a domain the account has not verified;
 * - the testing sender's recipients are only the account's own address: Resend's test addresses (such as
 *   delivered@resend.dev) get the 403 here, where Resend accepts them.
 * `failNext` makes the next request fail with any of Resend's other answers (a 5xx, a 429, a 422 for an address),
 * `stallNext` leaves it unanswered, and `dropNext` takes the email (it is recorded as sent) and then drops the
 * connection without an answer, for the error paths; a closed recorder is Resend unreachable.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

export interface RecordedEmail {
  /** The Bearer token the request carried. */
  readonly apiKey: string;
  readonly body: {
    readonly from: string;
    readonly to: string | readonly string[];
    readonly subject: string;
    readonly text?: string;
    readonly html?: string;
    readonly [field: string]: unknown;
  };
}

export interface ResendRecorder {
  /** No trailing slash, as the client appends the path. */
  readonly baseUrl: string;
  /** Accepted emails, oldest first. */
  readonly sent: RecordedEmail[];
  /**
   * The next request gets this status, body (an object is sent as JSON, a string as is) and headers (Resend's
   * `retry-after`, say), and is not recorded.
   */
  failNext(status: number, body: unknown, headers?: Record<string, string>): void;
  /** The next request gets no answer: its connection is held until `close`. */
  stallNext(): void;
  /** The next request's email is taken and recorded, and its connection dropped before any answer. */
  dropNext(): void;
  close(): Promise<void>;
}

/** Resend's rate limit per team unless raised (resend.com/changelog/api-rate-limit). */
export const RESEND_DEFAULT_REQUESTS_PER_SECOND = 2;

/** Resend's most recipients of one email (resend.com/docs/api-reference/emails/send-email). */
export const RESEND_MAX_RECIPIENTS = 50;

export interface ResendRecorderOptions {
  /** The Resend account's own address, the only one its testing sender reaches. */
  readonly accountEmail?: string;
  /** Requests answered per second, past which Resend's 429; unset, no limit. */
  readonly requestsPerSecond?: number;
}

export async function startResendRecorder(options: ResendRecorderOptions = {}): Promise<ResendRecorder> {
  const accountEmail = (options.accountEmail ?? "owner@resend-recorder.test").toLowerCase();
  const sent: RecordedEmail[] = [];
  let failure: { status: number; body: unknown; headers: Record<string, string> } | undefined;
  let stall = false;
  let drop = false;
  /** When the requests of the last second were answered (ms), for the rate limit. */
  let answeredAt: number[] = [];

  const server = createServer((req, res) => {
    readBody(req).then(
      (raw) => {
        const limit = options.requestsPerSecond;
        if (limit !== undefined) {
          const now = Date.now();
          answeredAt = answeredAt.filter((at) => at > now - 1000);
          if (answeredAt.length >= limit) {
            const waitS = String(Math.max(1, Math.ceil((answeredAt[0]! + 1000 - now) / 1000)));
            return reply(
              res,
              429,
              resendError(
                429,
                "rate_limit_exceeded",
                `Too many requests. You can only make ${limit} requests per second.`,
              ),
              {
                "retry-after": waitS,
                "ratelimit-limit": String(limit),
                "ratelimit-remaining": "0",
                "ratelimit-reset": waitS,
              },
            );
          }
          answeredAt.push(now);
        }
        if (stall) {
          stall = false;
          return;
        }
        if (failure !== undefined) {
          const { status, body, headers } = failure;
          failure = undefined;
          return reply(res, status, body, headers);
        }
        if (drop) {
          drop = false;
          // Dropped first, so that no byte of the answer handle() writes can reach the client.
          res.socket?.destroy();
          handle(req, raw, res, sent, accountEmail);
          return;
        }
        handle(req, raw, res, sent, accountEmail);
      },
      () => reply(res, 400, resendError(400, "validation_error", "Could not read the request body.")),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("resend recorder: no TCP address");

  return {
    baseUrl: `http://127.0.0.1:${address.port}`,
    sent,
    failNext(status, body, headers = {}) {
      failure = { status, body, headers };
    },
    stallNext() {
      stall = true;
    },
    dropNext() {
      drop = true;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // fetch keeps connections alive; without this, close waits for them to time out.
        server.closeAllConnections();
      }),
  };
}

function handle(
  req: IncomingMessage,
  raw: string,
  res: ServerResponse,
  sent: RecordedEmail[],
  accountEmail: string,
): void {
  const path = new URL(req.url ?? "/", "http://recorder").pathname;
  if (path !== "/emails")
    return reply(res, 404, resendError(404, "not_found", "The requested endpoint does not exist."));
  if (req.method !== "POST")
    return reply(res, 405, resendError(405, "method_not_allowed", "Method is not allowed for the requested path."));

  const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1];
  if (bearer === undefined)
    return reply(res, 401, resendError(401, "missing_api_key", "Missing API key in the authorization header."));
  if (!/^re_\w+$/.test(bearer)) return reply(res, 403, resendError(403, "invalid_api_key", "API key is invalid."));

  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    return reply(res, 400, resendError(400, "validation_error", "Invalid JSON body."));
  }
  if (!isEmailBody(body)) {
    return reply(
      res,
      422,
      resendError(422, "missing_required_field", "Missing `from`, `to`, `subject`, or a `text`/`html` body."),
    );
  }
  const refusal = refusalOf(body, accountEmail);
  if (refusal !== undefined) return reply(res, refusal.statusCode, refusal);
  sent.push({ apiKey: bearer, body });
  reply(res, 200, { id: randomUUID() });
}

const ADDRESS_FORM = "The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.";

/** What Resend answers for a well-typed body it still refuses, or undefined when it sends it. */
function refusalOf(body: RecordedEmail["body"], accountEmail: string) {
  const from = addressOf(body.from);
  if (from === undefined) return resendError(422, "invalid_from_address", `Invalid \`from\` field. ${ADDRESS_FORM}`);
  const to = typeof body.to === "string" ? [body.to] : body.to;
  if (to.length > RESEND_MAX_RECIPIENTS)
    return resendError(
      400,
      "validation_error",
      `Invalid \`to\` field. An email can have at most ${RESEND_MAX_RECIPIENTS} recipients.`,
    );
  const recipients = to.map(addressOf);
  if (recipients.includes(undefined))
    return resendError(400, "validation_error", `Invalid \`to\` field. ${ADDRESS_FORM}`);
  const testingSender = /@(?:.+\.)?resend\.dev$/.test(from);
  if (testingSender && recipients.some((address) => address !== accountEmail))
    return resendError(
      403,
      "validation_error",
      `You can only send testing emails to your own email address (${accountEmail}). To send emails to other ` +
        "recipients, please verify a domain at resend.com/domains, and change the `from` address to an email " +
        "using this domain.",
    );
  return undefined;
}

/** The address of `email@example.com` or `Name <email@example.com>`, lower-cased; undefined for another form. */
function addressOf(field: string): string | undefined {
  const m = /^\s*(?:[^<>]*<([^<>]*)>|([^<>]*))\s*$/.exec(field);
  const address = (m?.[1] ?? m?.[2])?.trim();
  if (address === undefined || !/^[^\s@<>,;"]+@[^\s@<>,;"]+\.[^\s@<>,;".]+$/.test(address)) return undefined;
  return address.toLowerCase();
}

function isEmailBody(body: unknown): body is RecordedEmail["body"] {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Record<string, unknown>;
  const to = b.to;
  const toOk = typeof to === "string" || (Array.isArray(to) && to.length > 0 && to.every((t) => typeof t === "string"));
  return (
    typeof b.from === "string" &&
    toOk &&
    typeof b.subject === "string" &&
    (typeof b.text === "string" || typeof b.html === "string")
  );
}

function resendError(statusCode: number, name: string, message: string) {
  return { statusCode, name, message };
}

function reply(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const type = typeof body === "string" ? "text/plain" : "application/json";
  res.writeHead(status, { "content-type": type, ...headers }).end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
