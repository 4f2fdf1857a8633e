/**
 * The stream client's options, checked when it is made. A wrong one would otherwise surface only later, as an
 * `error` event on every retry (a missing WebSocket constructor fails at each new socket, after a ticket was fetched
 * for it), or not at all (a NaN period); thrown at once, it names the option, what was expected and what came.
 */

/** Why `options` cannot make a client, if they cannot: `<option>: expected …, received …`. */
export function invalidOptions(options: unknown): string | undefined {
  if (options === null || typeof options !== "object")
    return `options: expected an object, received ${shown(options)}.`;
  const o = options as Record<string, unknown>;
  if (typeof o.apiUrl !== "string")
    return `apiUrl: expected the API's origin as a string (e.g. "https://api.example.com"), received ${shown(o.apiUrl)}.`;
  // The ticket route is under <apiUrl>/api/v1: a URL that has it already would be refused 404 three times over.
  // Anything else fetch cannot take would fail only as a bare "fetch failed", retried for ever: a URL without its
  // scheme ("localhost:3000", which URL reads as the scheme "localhost:"), or the stream's ws:// one.
  const protocol = protocolOf(o.apiUrl);
  if (protocol === "ws:" || protocol === "wss:")
    return (
      "apiUrl: expected the API's http(s) origin (the stream's ws(s) URL comes with each ticket), received " +
      `${shown(o.apiUrl)}.`
    );
  if (protocol !== "http:" && protocol !== "https:")
    return `apiUrl: expected the API's origin as an absolute http(s) URL (e.g. "https://api.example.com"), received ${shown(o.apiUrl)}.`;
  if (/\/api\/v1\/*$/.test(o.apiUrl))
    return `apiUrl: expected the API's origin without /api/v1, received ${shown(o.apiUrl)}.`;
  if (typeof o.WebSocket !== "function")
    return (
      "WebSocket: expected a WebSocket constructor (globalThis.WebSocket in browsers and Node 22+, or the `ws` " +
      `package's WebSocket on Node 20), received ${shown(o.WebSocket)}.`
    );
  if (o.fetch !== undefined && typeof o.fetch !== "function")
    return `fetch: expected a fetch function (or none: the global fetch), received ${shown(o.fetch)}.`;
  if (o.fetch === undefined && typeof globalThis.fetch !== "function")
    return "fetch: expected a fetch function, since this platform has no global fetch, received undefined.";
  if (o.token !== undefined && (typeof o.token !== "string" || o.token === ""))
    return `token: expected the session token, a non-empty string (or none: the cookies), received ${shown(o.token)}.`;
  if (o.headers !== undefined) {
    if (!isRecord(o.headers)) return `headers: expected an object of header values, received ${shown(o.headers)}.`;
    for (const [name, value] of Object.entries(o.headers))
      if (typeof value !== "string") return `headers.${name}: expected a string, received ${shown(value)}.`;
  }
  if (o.subscriptions !== undefined && !Array.isArray(o.subscriptions))
    return `subscriptions: expected an array of subscriptions, received ${shown(o.subscriptions)}.`;
  for (const [name, maxMs] of [
    ["heartbeatMs", MAX_HEARTBEAT_MS],
    ["ticketTimeoutMs", MAX_TIMER_MS],
  ] as const) {
    const value = o[name];
    if (value !== undefined && !isPositive(value))
      return `${name}: expected a positive number of milliseconds, received ${shown(value)}.`;
    if (value !== undefined && (value as number) > maxMs) return tooLong(name, maxMs, value);
  }
  if (o.backoff !== undefined) {
    if (!isRecord(o.backoff)) return `backoff: expected an object, received ${shown(o.backoff)}.`;
    for (const [name, zeroAllowed, maxMs] of BACKOFF_FIELDS) {
      const value = o.backoff[name];
      if (value !== undefined && !(isPositive(value) || (zeroAllowed && value === 0))) {
        const kind = zeroAllowed ? "a non-negative" : "a positive";
        return `backoff.${name}: expected ${kind} number of milliseconds, received ${shown(value)}.`;
      }
      if (value !== undefined && (value as number) > maxMs) return tooLong(`backoff.${name}`, maxMs, value);
    }
  }
  if (o.random !== undefined && typeof o.random !== "function")
    return `random: expected a function returning a number in [0, 1), received ${shown(o.random)}.`;
  return undefined;
}

/**
 * The longest a timer waits: browsers and Node take a longer delay as about 1 ms (Node warns with
 * TimeoutOverflowWarning), so a ticket timeout "that never comes" would abort every request at once, and a backoff
 * capped beyond it would retry in a tight loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The silence timer waits twice the heartbeat period. */
export const MAX_HEARTBEAT_MS = Math.floor(MAX_TIMER_MS / 2);

/**
 * The backoff fields, whether each may be 0, and the most each may be. A zero step would retry in a tight loop, while
 * a zero stable time or going-away spread only turns that rule off. The stable time is compared with how long a
 * connection stayed up, and no timer waits it: any finite number will do.
 */
const BACKOFF_FIELDS = [
  ["initialMs", false, MAX_TIMER_MS],
  ["maxMs", false, MAX_TIMER_MS],
  ["stableMs", true, Number.MAX_VALUE],
  ["goingAwayMaxMs", true, MAX_TIMER_MS],
] as const;

function tooLong(name: string, maxMs: number, value: unknown): string {
  const why =
    maxMs === MAX_TIMER_MS
      ? "the longest a timer waits, about 24.8 days"
      : "the silence timer waits twice it, and a timer at most 2^31-1 ms";
  return `${name}: expected at most ${maxMs} milliseconds (${why}), received ${shown(value)}.`;
}

/** A URL's scheme as URL reads it ("https:"), or undefined when it is not an absolute URL. */
function protocolOf(url: string): string | undefined {
  try {
    return new URL(url).protocol;
  } catch {
    return undefined;
  }
}

function isPositive(value: unknown): boolean {
  return typeof value === "number" && Number.isFinite(value) && value > 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A value as an error message shows it: strings quoted, functions and objects by kind, at most 60 characters. */
function shown(value: unknown): string {
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) return "an array";
  if (value === null || typeof value !== "object") {
    const text = typeof value === "string" ? JSON.stringify(value) : String(value);
    return text.length > 60 ? `${text.slice(0, 59)}…` : text;
  }
  return "an object";
}
