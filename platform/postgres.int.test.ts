// The Neon driver's Pool reaching a plain local Postgres through the in-process WebSocket→TCP proxy, and the
// proxy's own contract: only allow-listed addresses, raw bytes both ways, each side closed with the other.
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { neonConfig } from "@neondatabase/serverless";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { createLogger } from "./log.ts";
import { startPgWsProxy } from "./pg-ws-proxy.ts";
import { connectPostgres, LoopbackWebSocket } from "./postgres.ts";
import { createTestDatabase, type TestDatabase } from "./testing/test-database.ts";

const quiet = createLogger("test", { sink: () => undefined });
let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.drop();
});

describe("Neon Pool through the local proxy", () => {
  it("runs queries with parameters, exactly typed", async () => {
    expect(t.db.viaLocalProxy).toBe(true);
    const r = await t.db.query<{ one: number; sum: number; text: string; amount: string; bytes: Buffer }>(
      "SELECT 1 AS one, $1::int + $2::int AS sum, $3::text AS text, $4::numeric(30,6) AS amount, $5::bytea AS bytes",
      [40, 2, "héllo ✓", "12345678901234567890.123456", Buffer.from([0, 255, 7])],
    );
    // numeric comes back as a string: money never passes through a float.
    expect(r.rows).toEqual([
      { one: 1, sum: 42, text: "héllo ✓", amount: "12345678901234567890.123456", bytes: Buffer.from([0, 255, 7]) },
    ]);
  });

  it("commits a transaction, and rolls one back when its function throws", async () => {
    await t.db.query("CREATE TABLE tx_probe (v int)");
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_probe VALUES (1)");
    });
    const boom = t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_probe VALUES (2)");
      throw new Error("boom");
    });
    await expect(boom).rejects.toThrow("boom");
    const rows = await t.db.query<{ v: number }>("SELECT v FROM tx_probe ORDER BY v");
    expect(rows.rows).toEqual([{ v: 1 }]);
  });

  it("sees the transaction's own writes on its one connection, and hides them from others until commit", async () => {
    await t.db.query("CREATE TABLE tx_iso (v int)");
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO tx_iso VALUES (7)");
      expect((await tx.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 1 });
      expect((await t.db.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 0 });
    });
    expect((await t.db.query("SELECT count(*)::int AS n FROM tx_iso")).rows[0]).toEqual({ n: 1 });
  });

  it("hands a transaction's rows over one by one as they arrive (eachRow), in order, keeping none", async () => {
    const seen: { i: number; length: number; at: number }[] = [];
    const ended = await t.db.transaction(async (tx) => {
      // Rows of 1 MiB (so Postgres flushes each as it is made), the third one made after a 0.3 s sleep.
      const count = await tx.eachRow<{ i: number; data: string }>(
        "SELECT i, repeat('x', 1048576) AS data, CASE WHEN i = 3 THEN pg_sleep(0.3) END AS nap FROM generate_series(1, $1::int) AS i",
        [3],
        (row) => seen.push({ i: row.i, length: row.data.length, at: performance.now() }),
      );
      expect(count).toBe(3);
      return performance.now();
    });
    expect(seen.map((r) => [r.i, r.length])).toEqual([
      [1, 1048576],
      [2, 1048576],
      [3, 1048576],
    ]);
    // The first rows were there before the sleep that the last one waited for: they were not held back to the end.
    expect(ended - seen[0]!.at).toBeGreaterThanOrEqual(250);
  });

  it("rejects eachRow with the query's error, or with the row callback's first throw, and rolls back", async () => {
    await t.db.query("CREATE TABLE each_probe (v int)");
    const failing = t.db.transaction((tx) =>
      tx.eachRow("SELECT 1 / (2 - i) AS v FROM generate_series(1, 3) AS i", [], () => undefined),
    );
    await expect(failing).rejects.toThrow("division by zero");
    const calls: number[] = [];
    const thrown = t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO each_probe VALUES (1)");
      await tx.eachRow<{ i: number }>("SELECT i FROM generate_series(1, 5) AS i", [], (row) => {
        calls.push(row.i);
        if (row.i === 2) throw new Error("row 2 is bad");
      });
    });
    await expect(thrown).rejects.toThrow("row 2 is bad");
    expect(calls).toEqual([1, 2]); // nothing after the throw
    expect((await t.db.query("SELECT count(*)::int AS n FROM each_probe")).rows[0]).toEqual({ n: 0 });
    // The connection is fine afterwards.
    expect((await t.db.transaction((tx) => tx.query<{ two: number }>("SELECT 2 AS two"))).rows).toEqual([{ two: 2 }]);
  });

  it("runs two pools at once without touching the driver's process-wide config", async () => {
    const before = {
      wsProxy: neonConfig.wsProxy,
      pipelineConnect: neonConfig.pipelineConnect,
      secure: neonConfig.useSecureWebSocket,
    };
    const other = await connectPostgres(t.url, quiet);
    try {
      const [a, b] = await Promise.all([
        t.db.query<{ db: string }>("SELECT current_database() AS db"),
        other.query<{ db: string }>("SELECT current_database() AS db"),
      ]);
      expect(a.rows[0]?.db).toBe(t.name);
      expect(b.rows[0]?.db).toBe(t.name);
    } finally {
      await other.close();
    }
    expect({
      wsProxy: neonConfig.wsProxy,
      pipelineConnect: neonConfig.pipelineConnect,
      secure: neonConfig.useSecureWebSocket,
    }).toEqual(before);
    expect(neonConfig.pipelineConnect).toBe("password");
  });

  it("fails fast with a clear message when Postgres is not there", async () => {
    const url = new URL(t.url);
    url.port = "1"; // nothing listens on port 1
    await expect(connectPostgres(url.toString(), quiet)).rejects.toThrow(
      /cannot reach Postgres at 127\.0\.0\.1:1\/t_\w+ \(via the local WebSocket proxy\)/,
    );
  });
});

describe("pg ws proxy", () => {
  let echo: Server;
  let echoPort: number;
  const serverSockets: Socket[] = [];
  beforeAll(async () => {
    // A TCP echo server stands in for Postgres, so the bytes and closes are ours to control.
    echo = createServer((s) => {
      serverSockets.push(s);
      s.on("data", (d) => s.write(d));
    });
    echo.listen(0, "127.0.0.1");
    await once(echo, "listening");
    echoPort = (echo.address() as { port: number }).port;
  });
  afterAll(() => {
    echo.close();
  });

  /** The error a WebSocket client gets for the upgrade; ws reports a non-101 answer as "Unexpected server response". */
  async function refusal(proxyPort: number, path: string): Promise<string> {
    const ws = new WebSocket(`ws://127.0.0.1:${proxyPort}${path}`);
    const [err] = (await once(ws, "error")) as [Error];
    return err.message;
  }

  /** Sends `payload` through the proxy to the echo server and resolves with what came back, once as long. */
  function echoed(ws: WebSocket, payload: Buffer): Promise<Buffer> {
    const received: Buffer[] = [];
    let total = 0;
    const all = new Promise<Buffer>((resolve) =>
      ws.on("message", (d: Buffer) => {
        received.push(d);
        total += d.length;
        if (total >= payload.length) resolve(Buffer.concat(received));
      }),
    );
    ws.send(payload);
    return all;
  }

  it("refuses addresses outside its allow-list, and malformed requests", async () => {
    const proxy = await startPgWsProxy({ allow: [`127.0.0.1:${echoPort}`], log: quiet });
    try {
      expect(await refusal(proxy.port, "/v1?address=127.0.0.1:22")).toBe("Unexpected server response: 403");
      // The same server under another name is not on the list: no DNS-based equivalence.
      expect(await refusal(proxy.port, `/v1?address=localhost:${echoPort}`)).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, "/v1?address=example.com:443")).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, "/v1")).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, `/v2?address=127.0.0.1:${echoPort}`)).toBe("Unexpected server response: 403");
    } finally {
      await proxy.close();
    }
  });

  it("pipes binary bytes both ways and closes each side when the other closes", async () => {
    const proxy = await startPgWsProxy({ allow: [`127.0.0.1:${echoPort}`], log: quiet });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/v1?address=127.0.0.1:${echoPort}`);
      await once(ws, "open");
      const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 256));
      expect((await echoed(ws, payload)).equals(payload)).toBe(true);

      // The client closes → the upstream TCP socket ends.
      const upstream = serverSockets.at(-1)!;
      const upstreamClosed = once(upstream, "close");
      ws.close();
      await upstreamClosed;

      // The upstream ends → the client's WebSocket closes.
      const ws2 = new WebSocket(`ws://127.0.0.1:${proxy.port}/v1?address=127.0.0.1:${echoPort}`);
      await once(ws2, "open");
      ws2.send(Buffer.from("x"));
      await once(ws2, "message");
      const closed = once(ws2, "close");
      serverSockets.at(-1)!.end();
      const [code] = (await closed) as [number];
      expect(code).toBe(1000);
    } finally {
      await proxy.close();
    }
  });

  /** The first frame a client of this class sends, as a bare WebSocket server reads it off the socket. */
  async function firstFrame(Socket: new (address: string) => WebSocket, payload: Buffer) {
    let resolveFrame!: (frame: { masked: boolean; key: Buffer; payload: Buffer }) => void;
    const frame = new Promise<{ masked: boolean; key: Buffer; payload: Buffer }>((resolve) => (resolveFrame = resolve));
    const server = createServer((s) => {
      let pending = Buffer.alloc(0);
      let upgraded = false;
      s.on("data", (d: Buffer) => {
        pending = Buffer.concat([pending, d]);
        if (!upgraded) {
          const end = pending.indexOf("\r\n\r\n");
          if (end < 0) return;
          const key = /sec-websocket-key: *(\S+)/i.exec(pending.subarray(0, end).toString())![1]!;
          const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
          s.write(
            `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
          );
          upgraded = true;
          pending = pending.subarray(end + 4);
        }
        // Payloads of 126..65535 bytes: 2 header bytes, a 16-bit length, the 4-byte key, then the payload.
        if (pending.length < 8 || pending.length < 8 + pending.readUInt16BE(2)) return;
        const key = pending.subarray(4, 8);
        const body = Buffer.from(pending.subarray(8, 8 + pending.readUInt16BE(2)));
        for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
        resolveFrame({ masked: (pending[1]! & 0x80) !== 0, key: Buffer.from(key), payload: body });
        s.destroy();
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const ws = new Socket(`ws://127.0.0.1:${(server.address() as { port: number }).port}/v1`);
    ws.on("error", () => undefined); // the server drops it after the frame
    await once(ws, "open");
    ws.send(payload);
    try {
      return await frame;
    } finally {
      ws.terminate();
      server.close();
    }
  }

  it("LoopbackWebSocket sends each frame with a zero masking key, its payload as it is; a plain one masks", async () => {
    const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    const loopback = await firstFrame(LoopbackWebSocket, payload);
    expect(loopback.masked).toBe(true); // still a masked frame, as RFC 6455 wants of a client
    expect(loopback.key.equals(Buffer.alloc(4))).toBe(true);
    expect(loopback.payload.equals(payload)).toBe(true);
    const plain = await firstFrame(WebSocket, payload);
    expect(plain.key.equals(Buffer.alloc(4))).toBe(false);
    expect(plain.payload.equals(payload)).toBe(true);
  });

  it("pipes a LoopbackWebSocket's unmasked frames to the upstream intact", async () => {
    const proxy = await startPgWsProxy({ allow: [`127.0.0.1:${echoPort}`], log: quiet });
    try {
      const ws = new LoopbackWebSocket(`ws://127.0.0.1:${proxy.port}/v1?address=127.0.0.1:${echoPort}`);
      await once(ws, "open");
      const payload = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 256));
      expect((await echoed(ws, payload)).equals(payload)).toBe(true);
      ws.close();
    } finally {
      await proxy.close();
    }
  });
});
