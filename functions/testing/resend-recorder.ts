/**
 * A stand-in for Resend's `POST /emails`, for tests: the real `resend` client is pointed at it (`baseUrl`, or
 * RESEND_BASE_URL for whole processes) and it records what would have been sent. It answers the way the client
 * expects: `{ id }` on success, Resend's error shape `{ statusCode, name, message }` otherwise, with Resend's
 * documented codes — 401 missing_api_key without a Bearer key, 403 invalid_api_key for a key not shaped `re_…`,
 * 400/422 for a bad body. `failNext` makes the next request fail with any of Resend's other answers (a 5xx, a 429,
 * a 422 for an address), and `stallNext` leaves it unanswered, for the error paths; a closed recorder is Resend
 * unreachable.
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
  close(): Promise<void>;
}

export async function startResendRecorder(): Promise<ResendRecorder> {
  const sent: RecordedEmail[] = [];
  let failure: { status: number; body: unknown; headers: Record<string, string> } | undefined;
  let stall = false;

  const server = createServer((req, res) => {
    readBody(req).then(
      (raw) => {
        if (stall) {
          stall = false;
          return;
        }
        if (failure !== undefined) {
          const { status, body, headers } = failure;
          failure = undefined;
          return reply(res, status, body, headers);
        }
        handle(req, raw, res, sent);
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
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // fetch keeps connections alive; without this, close waits for them to time out.
        server.closeAllConnections();
      }),
  };
}

function handle(req: IncomingMessage, raw: string, res: ServerResponse, sent: RecordedEmail[]): void {
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
  sent.push({ apiKey: bearer, body });
  reply(res, 200, { id: randomUUID() });
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
