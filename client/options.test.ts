/**
 * The stream client's options are checked when it is made: a wrong one is thrown at once, naming the option, what
 * was expected and what came, before any ticket is requested.
 */
import { WebSocket } from "ws";
import { describe, expect, it, vi } from "vitest";
import { StreamClient, type StreamClientOptions } from "./stream-client.ts";

const GOOD = { apiUrl: "https://api.example.com", WebSocket, token: "a-session-token" };

/** Makes a client from GOOD with `changes`; returns what it threw, if anything. */
function made(changes: Record<string, unknown>): unknown {
  try {
    new StreamClient({ ...GOOD, ...changes }).close();
    return undefined;
  } catch (error) {
    return error;
  }
}

describe("the client's options", () => {
  it("takes good ones, with or without the optional ones", () => {
    expect(made({})).toBeUndefined();
    expect(
      made({
        token: undefined,
        headers: { Cookie: "session=abc" },
        subscriptions: [],
        heartbeatMs: 5_000,
        ticketTimeoutMs: 2_000,
        backoff: { initialMs: 100, maxMs: 1_000, stableMs: 0, goingAwayMaxMs: 0 },
        random: Math.random,
      }),
    ).toBeUndefined();
  });

  it("refuses a missing WebSocket (Node 20's globalThis.WebSocket) at once, saying what to pass", () => {
    const error = made({ WebSocket: undefined });
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(
      "WebSocket: expected a WebSocket constructor (globalThis.WebSocket in browsers and Node 22+, or the `ws` " +
        "package's WebSocket on Node 20), received undefined.",
    );
    expect((made({ WebSocket: {} }) as Error).message).toMatch(/^WebSocket: expected .*, received an object\.$/);
  });

  it.each<[string, Record<string, unknown>]>([
    [
      `apiUrl: expected the API's origin as a string (e.g. "https://api.example.com"), received undefined.`,
      { apiUrl: undefined },
    ],
    [
      `apiUrl: expected the API's origin without /api/v1, received "https://api.example.com/api/v1/".`,
      { apiUrl: "https://api.example.com/api/v1/" },
    ],
    ...["localhost:3000", "api.example.com", "", "/", "file:///tmp/api", "ftp://api.example.com"].map(
      (apiUrl) =>
        [
          `apiUrl: expected the API's origin as an absolute http(s) URL (e.g. "https://api.example.com"), received ${JSON.stringify(apiUrl)}.`,
          { apiUrl },
        ] as [string, Record<string, unknown>],
    ),
    ...["ws://localhost:3001", "wss://stream.example.com/api/v1/stream"].map(
      (apiUrl) =>
        [
          "apiUrl: expected the API's http(s) origin (the stream's ws(s) URL comes with each ticket), received " +
            `${JSON.stringify(apiUrl)}.`,
          { apiUrl },
        ] as [string, Record<string, unknown>],
    ),
    [`fetch: expected a fetch function (or none: the global fetch), received "fetch".`, { fetch: "fetch" }],
    [`token: expected the session token, a non-empty string (or none: the cookies), received "".`, { token: "" }],
    [`token: expected the session token, a non-empty string (or none: the cookies), received 42.`, { token: 42 }],
    [`headers: expected an object of header values, received "Cookie: x".`, { headers: "Cookie: x" }],
    [`headers.Cookie: expected a string, received undefined.`, { headers: { Cookie: undefined } }],
    [
      `subscriptions: expected an array of subscriptions, received an object.`,
      { subscriptions: { channel: "quotes" } },
    ],
    [`heartbeatMs: expected a positive number of milliseconds, received 0.`, { heartbeatMs: 0 }],
    [`ticketTimeoutMs: expected a positive number of milliseconds, received NaN.`, { ticketTimeoutMs: Number.NaN }],
    [`backoff: expected an object, received an array.`, { backoff: [] }],
    [`backoff.initialMs: expected a positive number of milliseconds, received 0.`, { backoff: { initialMs: 0 } }],
    [`backoff.maxMs: expected a positive number of milliseconds, received "30s".`, { backoff: { maxMs: "30s" } }],
    [`backoff.stableMs: expected a non-negative number of milliseconds, received -1.`, { backoff: { stableMs: -1 } }],
    [
      `backoff.goingAwayMaxMs: expected a non-negative number of milliseconds, received Infinity.`,
      { backoff: { goingAwayMaxMs: Infinity } },
    ],
    [`random: expected a function returning a number in [0, 1), received 0.5.`, { random: 0.5 }],
    // Longer than a timer waits: browsers and Node would fire it after about 1 ms.
    [
      "ticketTimeoutMs: expected at most 2147483647 milliseconds (the longest a timer waits, about 24.8 days), " +
        "received 2147483648.",
      { ticketTimeoutMs: 2 ** 31 },
    ],
    [
      "heartbeatMs: expected at most 1073741823 milliseconds (the silence timer waits twice it, and a timer at most " +
        "2^31-1 ms), received 1073741824.",
      { heartbeatMs: 2 ** 30 },
    ],
    ...(["initialMs", "maxMs", "goingAwayMaxMs"] as const).map(
      (name) =>
        [
          `backoff.${name}: expected at most 2147483647 milliseconds (the longest a timer waits, about 24.8 days), ` +
            "received 1e+100.",
          { backoff: { [name]: 1e100 } },
        ] as [string, Record<string, unknown>],
    ),
  ])("refuses what is wrong: %s", (message, changes) => {
    const error = made(changes);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(message);
  });

  it("takes periods up to the longest a timer waits, and any finite stable time", () => {
    expect(
      made({
        heartbeatMs: 2 ** 30 - 1,
        ticketTimeoutMs: 2 ** 31 - 1,
        backoff: { initialMs: 2 ** 31 - 1, maxMs: 2 ** 31 - 1, stableMs: 1e100, goingAwayMaxMs: 2 ** 31 - 1 },
      }),
    ).toBeUndefined();
  });

  it("takes an http(s) apiUrl with a port, a path before /api/v1 or a trailing slash", () => {
    for (const apiUrl of [
      "http://localhost:3000",
      "http://127.0.0.1:3000/",
      "https://example.com/broker",
      "HTTPS://A.B",
    ])
      expect(made({ apiUrl })).toBeUndefined();
  });

  it("refuses options that are not an object", () => {
    expect(() => new StreamClient(null as unknown as StreamClientOptions)).toThrow(
      new TypeError("options: expected an object, received null."),
    );
  });

  it("without a fetch option, needs the platform's global fetch", () => {
    vi.stubGlobal("fetch", undefined);
    try {
      expect(() => new StreamClient(GOOD)).toThrow(
        new TypeError("fetch: expected a fetch function, since this platform has no global fetch, received undefined."),
      );
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
