// The hub's revocation backstop on plain data: sockets standing in as objects, fake timers, the check's answer held.
import type { WebSocket } from "ws";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamHub } from "./hub.ts";
import { NO_METRICS } from "./metrics.ts";

const fakeSocket = () =>
  ({
    bufferedAmount: 0,
    on: () => undefined,
    send: () => undefined,
    ping: () => undefined,
    close: () => undefined,
  }) as unknown as WebSocket;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("the revocation backstop", () => {
  it("checks every open session each revocationCheckMs (30 s by default), never two checks at once", async () => {
    expect(DEFAULT_LIMITS.revocationCheckMs).toBe(30_000);
    const checks: { sessions: number; answer: (revoked: boolean[]) => void }[] = [];
    const hub = new StreamHub({
      limits: DEFAULT_LIMITS,
      store: {
        readState: () => Promise.reject(new Error("not used")),
        readAfter: () => Promise.reject(new Error("not used")),
      },
      revokedSessions: (sessions) =>
        new Promise((resolve) => checks.push({ sessions: sessions.length, answer: resolve })),
      log: createLogger("stream-test", { level: "error" }),
      metrics: NO_METRICS,
    });
    hub.start();
    for (const sessionId of ["s1", "s2"])
      hub.accept(fakeSocket(), { userId: "u", sessionId, sessionExpiresAtMs: Date.now() + 3_600_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(checks.map((c) => c.sessions)).toEqual([2]);
    // Redis is slow: the first check has not answered 90 s on, and no other started meanwhile.
    await vi.advanceTimersByTimeAsync(90_000);
    expect(checks).toHaveLength(1);
    checks[0]!.answer([false, false]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(checks).toHaveLength(2);
    checks[1]!.answer([false, false]);
    await vi.advanceTimersByTimeAsync(25_000);
    expect(checks).toHaveLength(2); // not again before 30 s
    await vi.advanceTimersByTimeAsync(6_000);
    expect(checks).toHaveLength(3);
    checks[2]!.answer([false, false]);
    hub.shutdown();
  });
});
