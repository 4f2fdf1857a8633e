// The stream's HTTP server without Redis: how long it keeps an idle connection open. Deployed, a load balancer pools
// connections to it and may send a request on one after up to its idle timeout (60 s), so the server must not be the
// side that closes first. And how long it keeps the socket of an upgrade it refused: not past the answer.
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamHub } from "./hub.ts";
import { NO_METRICS } from "./metrics.ts";
import { createStreamServer, HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS, WHERE_THE_STREAM_IS } from "./server.ts";

let server: Server;
let port: number;
/** What the server logged at warn and above. */
const logs: string[] = [];

beforeAll(async () => {
  const log = createLogger("stream-test", { level: "warn", sink: (line) => logs.push(line) });
  const hub = new StreamHub({
    limits: DEFAULT_LIMITS,
    store: {
      readState: () => Promise.reject(new Error("not used")),
      readAfter: () => Promise.reject(new Error("not used")),
    },
    revokedSessions: () => Promise.reject(new Error("not used")),
    log,
    metrics: NO_METRICS,
  });
  server = createStreamServer({
    hub,
    takeTicket: () => Promise.reject(new Error("not used")),
    sessionRevoked: () => Promise.reject(new Error("not used")),
    allowedOrigins: new Set(),
    maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
    maxConnectionsPerUser: DEFAULT_LIMITS.maxConnectionsPerUser,
    heartbeatMs: DEFAULT_LIMITS.heartbeatMs,
    log,
  }).http;
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((closed) => server.close(closed));
});

/** Sends GET /health on `socket` and resolves with the status line once the whole (chunked) answer is in. */
function health(socket: Socket): Promise<string> {
  return new Promise((answered, failed) => {
    let received = "";
    const onData = (chunk: Buffer) => {
      received += chunk.toString("latin1");
      if (!received.includes("\r\n\r\n") || !/\r\n0\r\n\r\n$|"status":"ok"}$/.test(received)) return;
      socket.off("data", onData).off("close", onClose);
      answered(received.split("\r\n")[0]!);
    };
    const onClose = () =>
      failed(new Error(`connection closed before an answer (received ${JSON.stringify(received)})`));
    socket.on("data", onData).once("close", onClose);
    socket.write("GET /health HTTP/1.1\r\nHost: stream.test\r\n\r\n");
  });
}

describe("the stream's HTTP server", () => {
  it("keeps idle connections past the load balancer's idle timeout, and the header limit above that", () => {
    expect(server.keepAliveTimeout).toBe(KEEP_ALIVE_TIMEOUT_MS);
    expect(server.keepAliveTimeout).toBeGreaterThan(60_000);
    expect(server.headersTimeout).toBe(HEADERS_TIMEOUT_MS);
    expect(server.headersTimeout).toBeGreaterThan(server.keepAliveTimeout);
  });

  // Node's default keep-alive is 5 s, and its timer allows a second more before it closes the connection.
  it("answers a second request on a connection left idle longer than Node's default keep-alive (5 s)", async () => {
    const socket = connect(port, "127.0.0.1");
    let endedAfterMs: number | undefined;
    const opened = Date.now();
    socket.once("end", () => (endedAfterMs = Date.now() - opened));
    await new Promise<void>((connected) => socket.once("connect", connected));
    expect(await health(socket)).toBe("HTTP/1.1 200 OK");
    await new Promise((idle) => setTimeout(idle, 7_000));
    expect(endedAfterMs, "the server closed the idle connection").toBeUndefined();
    expect(await health(socket)).toBe("HTTP/1.1 200 OK");
    socket.destroy();
  }, 15_000);
});

/** A raw upgrade request for `target`, with the headers a WebSocket client sends. */
function upgradeRequest(target: string): string {
  return (
    `GET ${target} HTTP/1.1\r\nHost: stream.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
  );
}

describe("a refused upgrade", () => {
  it("has its socket closed by the server once answered, though the client keeps its side open", async () => {
    let serverSide: Duplex | undefined;
    server.once("upgrade", (_req: IncomingMessage, upgraded: Duplex) => (serverSide = upgraded));
    // allowHalfOpen: the client's side stays open after the server's FIN, as a client holding sockets would keep it.
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    socket.on("error", () => undefined);
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    await new Promise<void>((connected) => socket.once("connect", connected));
    socket.write(upgradeRequest("/api/v1/stream?ticket=short")); // refused on its shape, without Redis
    await new Promise<void>((ended) => socket.once("end", ended));
    expect(received.split("\r\n")[0]).toBe("HTTP/1.1 401 Unauthorized");
    expect(socket.writable, "the client's side is still open").toBe(true);
    const closed = await new Promise<boolean>((resolve) => {
      if (serverSide!.destroyed) return resolve(true);
      const timer = setTimeout(() => resolve(false), 1_000);
      serverSide!.once("close", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(closed, "the server closed its socket within 1 s").toBe(true);
    socket.destroy();
  });
});

/** The whole answer to an upgrade request for `target`, read until the server ends the connection. */
async function answerTo(target: string): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  await new Promise<void>((connected) => socket.once("connect", connected));
  socket.write(upgradeRequest(target));
  await new Promise<void>((closed) => socket.once("close", () => closed()));
  return received;
}

describe("an upgrade whose target URL cannot parse", () => {
  it("is refused 404 NOT_FOUND, as the plain handler answers such a target, without Retry-After or a warning", async () => {
    const before = logs.length;
    const answer = await answerTo("http://[/api/v1/stream");
    const [head, body] = answer.split("\r\n\r\n");
    expect(head!.split("\r\n")[0]).toBe("HTTP/1.1 404 Not Found");
    expect(head).not.toMatch(/retry-after/i);
    expect(JSON.parse(body!)).toEqual({
      error: { code: "NOT_FOUND", message: `No stream at http://[/api/v1/stream. ${WHERE_THE_STREAM_IS}` },
    });
    expect(logs.slice(before)).toEqual([]);
  });
});

describe("a request for another path", () => {
  const pointer =
    "The stream is a WebSocket at /api/v1/stream: open the url that the API's POST /api/v1/stream/ticket answers " +
    "(the API has its own port or host, not this one), with ?ticket=<ticket>.";

  it.each([
    ["/", "No stream at /."],
    ["/api/v1/stream/", "No stream at /api/v1/stream/."],
  ])("upgrading at %s is a 404 that says where the stream is", async (target, start) => {
    const [head, body] = (await answerTo(`${target}?ticket=${"a".repeat(43)}`)).split("\r\n\r\n");
    expect(head!.split("\r\n")[0]).toBe("HTTP/1.1 404 Not Found");
    expect(JSON.parse(body!)).toEqual({ error: { code: "NOT_FOUND", message: `${start} ${pointer}` } });
  });

  it("in plain HTTP is a 404 that says where the stream is", async () => {
    const answer = await fetch(`http://127.0.0.1:${port}/other`);
    expect(answer.status).toBe(404);
    expect(await answer.json()).toEqual({ error: { code: "NOT_FOUND", message: `No route GET /other. ${pointer}` } });
    const long = await fetch(`http://127.0.0.1:${port}/${"x".repeat(150)}`);
    const message = `No route GET /${"x".repeat(99)}…. ${pointer}`;
    expect(await long.json()).toEqual({ error: { code: "NOT_FOUND", message } });
  });

  it("POST /api/v1/stream/ticket is a 404 that says the ticket route is the API's, not this port's", async () => {
    const answer = await fetch(`http://127.0.0.1:${port}/api/v1/stream/ticket`, { method: "POST" });
    expect(answer.status).toBe(404);
    const message = `No route POST /api/v1/stream/ticket. ${pointer}`;
    expect(await answer.json()).toEqual({ error: { code: "NOT_FOUND", message } });
    expect(message).toContain("the API's POST /api/v1/stream/ticket");
    expect(message).toContain("not this one");
  });
});
