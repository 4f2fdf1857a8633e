/**
 * The stream client's plumbing, kept apart from its protocol logic: the few members of WebSocket and fetch it uses
 * (so the browser's and Node's both fit, with nothing of either imported), the ticket request, and the backoff.
 */

/** A handler property, compared bivariantly: the browser's and `ws`'s event types are richer than used here. */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** What the client uses of a WebSocket: the browser's and the `ws` package's both fit. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ readonly data: unknown }> | null;
  onclose: Handler<{ readonly code: number; readonly reason: string }> | null;
  onerror: Handler<unknown> | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the client uses of fetch: the browser's and Node's both fit. */
export type FetchLike = (
  url: string,
  init: { method: "POST"; headers: Record<string, string>; credentials: "include" | "omit"; signal: AbortSignal },
) => Promise<{ readonly status: number; headers: { get(name: string): string | null }; json(): Promise<unknown> }>;

export interface TicketRequestOptions {
  readonly apiUrl: string;
  readonly token?: string | undefined;
  readonly headers?: Readonly<Record<string, string>>;
}

export type Ticket = { ok: true; url: string } | { ok: false; status: number; message: string; retryAfterMs: number };

/**
 * A fresh single-use ticket from `POST <apiUrl>/api/v1/stream/ticket` (with the Bearer token, else the cookies), as
 * the URL to open the socket at; or why not (status, message, Retry-After as retryAfterMs reads it). Rejects when
 * the API cannot be reached or answers 201 with something else, and once `signal` aborts (with its reason), even if
 * the fetch given ignores it.
 */
export function requestTicket(
  fetch: FetchLike,
  options: TicketRequestOptions,
  signal: AbortSignal = new AbortController().signal,
): Promise<Ticket> {
  return new Promise((resolve, reject) => {
    const aborted = () =>
      reject(signal.reason instanceof Error ? signal.reason : new Error("the ticket request was aborted"));
    if (signal.aborted) return aborted();
    signal.addEventListener("abort", aborted, { once: true });
    void fetchTicket(fetch, options, signal)
      .then(resolve, reject)
      .finally(() => signal.removeEventListener("abort", aborted));
  });
}

async function fetchTicket(fetch: FetchLike, options: TicketRequestOptions, signal: AbortSignal): Promise<Ticket> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.Authorization = `Bearer ${options.token}`;
  const response = await fetch(`${options.apiUrl.replace(/\/+$/, "")}/api/v1/stream/ticket`, {
    method: "POST",
    headers,
    credentials: options.token === undefined ? "include" : "omit",
    signal,
  });
  const body = (await response.json().catch(() => undefined)) as
    { ticket?: unknown; url?: unknown; error?: { message?: unknown } } | undefined;
  if (response.status !== 201) {
    return {
      ok: false,
      status: response.status,
      message: typeof body?.error?.message === "string" ? body.error.message : `HTTP ${response.status}`,
      retryAfterMs: retryAfterMs(response.headers.get("retry-after"), Date.now()),
    };
  }
  if (typeof body?.ticket !== "string" || typeof body.url !== "string" || !/^wss?:\/\//.test(body.url))
    throw new Error(`the ticket answer is not {"ticket", "url": "ws(s)://…"}: ${JSON.stringify(body)}`);
  const url = new URL(body.url);
  url.searchParams.set("ticket", body.ticket);
  return { ok: true, url: url.toString() };
}

/**
 * The longest wait a Retry-After can impose, whatever it says: a header of days (a gateway's bug, or a hostile one)
 * would otherwise park the client that long. The ticket route's own is far shorter: what is left of its limit's
 * one-minute window. Not the backoff's `maxMs`: that may be shorter than the window, and a client back before the
 * window ends is only refused again.
 */
export const RETRY_AFTER_MAX_MS = 5 * 60_000;

/**
 * A Retry-After header as the milliseconds to wait: delay-seconds, or an HTTP date less `nowMs` (RFC 9110 §10.2.3
 * allows both; a date is as good as the two clocks agree); 0 when absent, unreadable or past; at most
 * RETRY_AFTER_MAX_MS.
 */
export function retryAfterMs(header: string | null, nowMs: number): number {
  if (header === null || header.trim() === "") return 0;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - nowMs;
  return ms > 0 ? Math.min(Math.ceil(ms), RETRY_AFTER_MAX_MS) : 0;
}

export interface BackoffPolicy {
  /** The first retry's cap; each failed attempt doubles it. */
  readonly initialMs: number;
  /** The largest cap. */
  readonly maxMs: number;
  /** A connection that stayed up this long counts as stable: the next retry starts from `initialMs` again. */
  readonly stableMs: number;
  /**
   * After close 1001 (the server going away: a deploy or restart closes every socket at once) the retry waits a
   * uniformly random time up to this, so its clients do not all come back in the same moment; at least the backoff
   * step too when the connection was not stable, so a server that keeps going away is asked ever more slowly. After
   * a stable connection was cut without a close frame (1006: deployed, the load balancer cuts a draining task's
   * sockets all at once), a uniformly random time from the first backoff step up to this. 0: no spread.
   */
  readonly goingAwayMaxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  stableMs: 10_000,
  goingAwayMaxMs: 5_000,
};

/** The pause before reconnecting after the server went away (1001): anywhere in [0, goingAwayMaxMs). */
export function goingAwayDelayMs(policy: BackoffPolicy, random: () => number): number {
  return Math.floor(random() * policy.goingAwayMaxMs);
}

/**
 * The pause before reconnecting after a stable connection was cut (1006): anywhere in [stepMs, goingAwayMaxMs), the
 * backoff step when that is the longer.
 */
export function cutDelayMs(stepMs: number, policy: BackoffPolicy, random: () => number): number {
  return stepMs + Math.floor(random() * Math.max(0, policy.goingAwayMaxMs - stepMs));
}

/** The pause before retry number `attempt` (0 first): "equal jitter", between half the cap and the cap. */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const cap = Math.min(policy.maxMs, policy.initialMs * 2 ** attempt);
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** Closes a socket whose events no longer matter; its error event must still have a listener (`ws` throws else). */
export function abandon(socket: WebSocketLike, code: number, reason: string): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => undefined;
  try {
    socket.close(code, reason.slice(0, 120));
  } catch {
    // Already closed, or still connecting where the platform refuses: either way it is gone to us.
  }
}

/** A text frame's data: a string in browsers and `ws`'s event API; bytes from other implementations. */
export function textOf(data: unknown): string {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(new Uint8Array(data));
  if (ArrayBuffer.isView(data))
    return new TextDecoder().decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return String(data);
}

/**
 * An error's message, with its cause's when it has one: Node's fetch says only "fetch failed" and keeps why in
 * `cause` ("connect ECONNREFUSED 127.0.0.1:3000", "getaddrinfo ENOTFOUND api.example.com"), so an API that is down
 * and a wrong address read alike without it.
 */
export function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const cause = causeOf(error.cause);
    return cause === undefined || error.message.includes(cause) ? error.message : `${error.message}: ${cause}`;
  }
  if (error !== null && typeof error === "object" && "message" in error) return String(error.message);
  return "socket error";
}

/**
 * What a cause says: its message, else (an AggregateError from trying each of a host's addresses has none) those of
 * the errors it holds, else its code; undefined when it says nothing.
 */
function causeOf(cause: unknown): string | undefined {
  if (cause === null || typeof cause !== "object") return typeof cause === "string" && cause !== "" ? cause : undefined;
  const { message, errors, code } = cause as { message?: unknown; errors?: unknown; code?: unknown };
  if (typeof message === "string" && message !== "") return message;
  if (Array.isArray(errors)) {
    const messages = errors.map((e: unknown) => causeOf(e)).filter((m) => m !== undefined);
    if (messages.length > 0) return [...new Set(messages)].join("; ");
  }
  return typeof code === "string" && code !== "" ? code : undefined;
}
