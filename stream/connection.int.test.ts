// Frames on real sockets: framed once for many (SharedFrame), read whole by a ws client in order with the frames ws
// frames itself, at every length encoding RFC 6455 has; and the corked sockets written a few at a time, later frames
// joining the sockets not yet written.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { DEFAULT_LIMITS } from "./config.ts";
import { SharedFrame, StreamConnection } from "./connection.ts";
import { NO_METRICS } from "./metrics.ts";

let server: WebSocketServer;
let url: string;

beforeAll(async () => {
  server = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
  await once(server, "listening");
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const client of server.clients) client.terminate();
  server.close();
  await once(server, "close");
});

/** A client socket and the StreamConnection the server side made of it. */
async function connect(): Promise<{ client: WebSocket; conn: StreamConnection; received: string[] }> {
  const accepted = once(server, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(url);
  const received: string[] = [];
  client.on("message", (data, isBinary) => received.push(isBinary ? "<binary>" : (data as Buffer).toString("utf8")));
  const [ws] = await accepted;
  await once(client, "open");
  const ticket = { userId: "u", sessionId: "s", sessionExpiresAtMs: Date.now() + 60_000 };
  return { client, conn: new StreamConnection(ws, ticket, DEFAULT_LIMITS, NO_METRICS, Date.now()), received };
}

const text = (length: number, fill: string) => JSON.stringify({ type: "quote", pad: fill.repeat(length - 25) });

describe("SharedFrame on a real socket", () => {
  it("arrives whole at each length encoding (7, 16 and 64 bits), in order with ws's own frames", async () => {
    const { client, conn, received } = await connect();
    // 125 and 126: the 7-bit limit; 65,535 and 65,536: the 16-bit one.
    const lengths = [30, 125, 126, 65_535, 65_536, 200_000];
    const expected: string[] = [];
    lengths.forEach((length, i) => {
      const payload = text(length, String.fromCharCode(97 + i));
      expect(Buffer.byteLength(payload)).toBe(length);
      conn.sendShared(new SharedFrame(Buffer.from(payload)), "quote", Date.now());
      const own = { type: "heartbeat" as const, time: String(i) };
      conn.send(own, Date.now());
      expected.push(payload, JSON.stringify(own));
    });
    while (received.length < expected.length) await once(client, "message");
    expect(received).toEqual(expected);
    client.close();
  });

  it("is the same bytes for every socket, and counts in bufferedAmount like ws's own", async () => {
    const a = await connect();
    const b = await connect();
    const frame = new SharedFrame(Buffer.from(text(300, "z")));
    expect(frame.wire.subarray(0, 4)).toEqual(Buffer.from([0x81, 126, 1, 44])); // FIN + text, 300 in 16 bits
    expect(frame.wire.length).toBe(304);
    a.conn.sendShared(frame, "quote", Date.now());
    b.conn.sendShared(frame, "quote", Date.now());
    // Corked until the turn's I/O is done: the bytes wait in the socket's buffer, where ws counts them.
    expect(a.conn.bufferedAmount).toBe(304);
    for (const s of [a, b]) {
      while (s.received.length < 1) await once(s.client, "message");
      expect(s.received).toEqual([text(300, "z")]);
      s.client.close();
    }
  });

  it("uncorks 50 sockets a turn: a frame sent meanwhile joins the sockets not yet written, in order everywhere", async () => {
    const sockets: Awaited<ReturnType<typeof connect>>[] = [];
    for (let i = 0; i < 120; i++) sockets.push(await connect()); // one at a time: each takes the next connection
    const first = new SharedFrame(Buffer.from(text(40, "a")));
    const second = new SharedFrame(Buffer.from(text(40, "b")));
    for (const s of sockets) s.conn.sendShared(first, "quote", Date.now());
    expect(sockets.map((s) => s.conn.bufferedAmount)).toEqual(Array(120).fill(42)); // all corked, none written
    await new Promise((resolve) => setImmediate(resolve)); // one turn: the first 50 written
    const waiting = sockets.map((s) => s.conn.bufferedAmount);
    expect(waiting.slice(0, 50)).toEqual(Array(50).fill(0));
    expect(waiting.slice(50)).toEqual(Array(70).fill(42));
    // The second frame: behind the first on the 70 still corked (one write for both), corked again on the 50.
    for (const s of sockets) s.conn.sendShared(second, "quote", Date.now());
    expect(sockets[0]!.conn.bufferedAmount).toBe(42);
    expect(sockets[119]!.conn.bufferedAmount).toBe(84);
    for (const s of sockets) {
      while (s.received.length < 2) await once(s.client, "message");
      expect(s.received).toEqual([text(40, "a"), text(40, "b")]);
      s.client.close();
    }
  });
});
