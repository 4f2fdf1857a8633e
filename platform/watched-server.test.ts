/**
 * npm start's own servers, restarted when they die by the components' crash-loop rule (restart-backoff.ts), with
 * stand-in servers that die when told and restarts that fail as told: no network, no processes.
 */
import { describe, expect, it } from "vitest";
import { backoffMs } from "./restart-backoff.ts";
import type { LocalServer } from "./local-servers.ts";
import { createLogger } from "./log.ts";
import { until } from "./testing/processes.ts";
import { WatchedServer } from "./watched-server.ts";

const URL = "redis://127.0.0.1:6390";

/** A server of its own that answers `alive()` for `servesMs` after it was made, then is dead. */
function standIn(servesMs: number): LocalServer & { stops: number } {
  const born = performance.now();
  const server = {
    url: URL,
    started: true,
    stops: 0,
    alive: () => Promise.resolve(performance.now() - born < servesMs),
    stop: () => {
      server.stops++;
      return Promise.resolve();
    },
  };
  return server;
}

type Line = Record<string, unknown> & { event: string };

function watched(
  first: LocalServer,
  restart: (port: number) => Promise<LocalServer>,
  stableMs: number,
  checkEveryMs = 20,
) {
  const lines: Line[] = [];
  const log = createLogger("start", { sink: (l) => lines.push(JSON.parse(l) as Line) });
  const server = new WatchedServer("redis", first, restart, log, { checkEveryMs, stableMs });
  server.watch(new AbortController().signal);
  const events = (event: string) => lines.filter((l) => l.event === event);
  return { server, lines, events };
}

describe("a server of npm start's own", () => {
  it(
    "that cannot be started again is tried again after a growing backoff, logged as a crash loop, until stop()",
    { timeout: 30_000 },
    async () => {
      const first = standIn(0);
      const attemptsAt: number[] = [];
      const ports: number[] = [];
      const { server, events } = watched(
        first,
        (port) => {
          attemptsAt.push(performance.now());
          ports.push(port);
          return Promise.reject(new Error(`port ${port} is taken`));
        },
        0, // its death counts as after serving: the first try is at once, the backoff is the failed starts'
      );
      try {
        await until(() => Promise.resolve(attemptsAt.length >= 3 || undefined), 20_000, "three restarts");
        expect(ports).toEqual([6390, 6390, 6390]);
        const gaps = attemptsAt.slice(1).map((at, i) => at - attemptsAt[i]!);
        expect(gaps[0]).toBeGreaterThanOrEqual(backoffMs(1) - 5); // timers may round down a little
        expect(gaps[1]).toBeGreaterThanOrEqual(backoffMs(2) - 5);
        expect(events("redis_died")).toEqual([
          expect.objectContaining({ level: "error", at: "127.0.0.1:6390", restartInMs: 0 }),
        ]);
        await until(() => Promise.resolve(events("redis_restart_failed").length >= 3 || undefined), 1_000, "3rd");
        expect(events("redis_restart_failed").map((l) => [l.level, l.failures, l.restartInMs])).toEqual([
          ["error", 1, backoffMs(1)],
          ["error", 2, backoffMs(2)],
          ["error", 3, backoffMs(3)],
        ]);
        expect(events("redis_restart_failed")[0]!.error).toMatchObject({ message: "port 6390 is taken" });
        // From the second failure in a row, as for a component.
        expect(events("redis_crash_loop").map((l) => [l.level, l.failures, l.restartInMs])).toEqual([
          ["warn", 2, backoffMs(2)],
          ["warn", 3, backoffMs(3)],
        ]);
      } finally {
        // During the third backoff (4 s): stop() does not wait it out.
        const stopping = performance.now();
        await server.stop();
        expect(performance.now() - stopping).toBeLessThan(500);
      }
      expect(first.stops).toBe(1);
      expect(attemptsAt).toHaveLength(3);
    },
  );

  it(
    "is restarted at once after serving stableMs, after a backoff when it dies sooner, and serving resets the count",
    { timeout: 30_000 },
    async () => {
      // Serves 400 ms (past stableMs), dies at once, serves 400 ms, dies at once, then keeps serving.
      const lives = [0, 400, 0, Infinity];
      const attemptsAt: number[] = [];
      const { server, events } = watched(
        standIn(400),
        () => {
          attemptsAt.push(performance.now());
          return Promise.resolve(standIn(lives[attemptsAt.length - 1]!));
        },
        300,
      );
      try {
        await until(() => Promise.resolve(events("redis_restarted").length >= 4 || undefined), 20_000, "4 restarts");
        // Each that died at once waited out its backoff from when it was found dead.
        const diedAt = events("redis_died").map((l) => Date.parse(String(l.time)));
        const restartedAt = events("redis_restarted").map((l) => Date.parse(String(l.time)));
        expect(restartedAt[1]! - diedAt[1]!).toBeGreaterThanOrEqual(backoffMs(1) - 5);
        expect(restartedAt[3]! - diedAt[3]!).toBeGreaterThanOrEqual(backoffMs(1) - 5);
        expect(restartedAt[2]! - diedAt[2]!).toBeLessThan(backoffMs(1));
        expect(events("redis_died").map((l) => l.restartInMs)).toEqual([0, backoffMs(1), 0, backoffMs(1)]);
        expect(events("redis_crash_loop")).toEqual([]);
        expect(events("redis_restart_failed")).toEqual([]);
      } finally {
        await server.stop();
      }
      expect(attemptsAt).toHaveLength(4);
    },
  );

  it("counts what it served up to the last check that found it alive, not to the one that found it dead", async () => {
    // Checked at about 200 ms (alive) and 400 ms (dead): it served 250 ms, less than stableMs, though found dead
    // only after 400.
    const { server, events } = watched(standIn(250), () => Promise.resolve(standIn(Infinity)), 300, 200);
    try {
      await until(() => Promise.resolve(events("redis_died").length > 0 || undefined), 5_000, "its death");
      const [died] = events("redis_died");
      expect(died!.restartInMs).toBe(backoffMs(1));
      expect(died!.upMs).toBeGreaterThanOrEqual(190);
      expect(died!.upMs).toBeLessThan(250);
    } finally {
      await server.stop();
    }
  });
});
