// The stream's Postgres, connected in the background: tried again with the worker's backoff while it fails, the
// outage logged once; a refusal of DATABASE_URL ends the tries and is handed over; loads fail until it connects.
import { describe, expect, it } from "vitest";
import { ConfigError } from "../platform/config.ts";
import { createLogger } from "../platform/log.ts";
import type { Postgres } from "../platform/postgres.ts";
import { connectInBackground } from "./postgres.ts";

const retry = { firstMs: 10, maxMs: 40 };

function logged() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("stream-test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines, events: () => lines.map((l) => l.event) };
}

const refusedConnection = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });

function fakeDb(): Postgres & { closed: number } {
  const db = {
    closed: 0,
    query: () => Promise.resolve({ rows: [{ one: 1 }], rowCount: 1 }),
    transaction: () => Promise.reject(new Error("not used")),
    close: () => {
      db.closed++;
      return Promise.resolve();
    },
  };
  return db as unknown as Postgres & { closed: number };
}

describe("connectInBackground", () => {
  it("fails loads until a try connects, trying again with a growing pause, the outage logged once", async () => {
    const { log, lines, events } = logged();
    const at: number[] = [];
    const db = fakeDb();
    const pg = connectInBackground("postgres://x@127.0.0.1:1/x", log, {
      retry,
      connect: () => {
        at.push(performance.now());
        return at.length < 5 ? Promise.reject(refusedConnection()) : Promise.resolve(db);
      },
    });
    expect(await pg.firstTry).toBeUndefined();
    await expect(pg.query("SELECT 1")).rejects.toThrow("Postgres is not connected yet");
    await expect.poll(() => events()).toContain("postgres_recovered");
    expect(await pg.query("SELECT 1")).toMatchObject({ rowCount: 1 });
    expect(events().filter((e) => e === "postgres_unavailable")).toHaveLength(1);
    expect(lines.find((l) => l.event === "postgres_unavailable")).toMatchObject({
      level: "warn",
      code: "ECONNREFUSED",
    });
    const pauses = at.slice(1).map((t, i) => t - at[i]!);
    // 10, 20, 40, 40 ms: doubling up to the most (timers may fire a little late, never early)
    expect(pauses.map((p, i) => p >= [10, 20, 40, 40][i]! - 2)).toEqual([true, true, true, true]);
    await pg.close();
    expect(db.closed).toBe(1);
  });

  it("stops trying at a refusal of DATABASE_URL and hands it over, on the first try or a later one", async () => {
    for (const failuresFirst of [0, 2]) {
      const { log } = logged();
      let tries = 0;
      const refusal = new ConfigError('DATABASE_URL names database "x", which does not exist');
      const pg = connectInBackground("postgres://x@127.0.0.1:1/x", log, {
        retry,
        connect: () => Promise.reject(++tries > failuresFirst ? refusal : refusedConnection()),
      });
      expect(await pg.firstTry).toBe(failuresFirst === 0 ? refusal : undefined);
      expect(await pg.refused).toBe(refusal);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(tries).toBe(failuresFirst + 1);
      await pg.close();
    }
  });

  it("does not hand over a refusal that comes once closed: a stop exits 0, not 2", async () => {
    const { log } = logged();
    let fail: (err: Error) => void = () => undefined;
    const pg = connectInBackground("postgres://x@127.0.0.1:1/x", log, {
      retry,
      connect: () => new Promise((_resolve, reject) => (fail = reject)),
    });
    await pg.close();
    fail(new ConfigError('DATABASE_URL names database "x", which does not exist'));
    const handed = await Promise.race([pg.refused, new Promise((r) => setTimeout(() => r("none"), 100))]);
    expect(handed).toBe("none");
  });

  it("stops trying once closed, and closes what a try under way connects", async () => {
    const { log } = logged();
    let tries = 0;
    let connect: (db: Postgres) => void = () => undefined;
    const db = fakeDb();
    const pg = connectInBackground("postgres://x@127.0.0.1:1/x", log, {
      retry,
      connect: () =>
        ++tries === 1 ? Promise.reject(refusedConnection()) : new Promise((resolve) => (connect = resolve)),
    });
    await expect.poll(() => tries).toBe(2);
    await pg.close();
    connect(db);
    await expect.poll(() => db.closed).toBe(1);
    await expect(pg.query("SELECT 1")).rejects.toThrow("not connected");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(tries).toBe(2);
  });
});
