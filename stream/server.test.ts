// The stream's HTTP server without Redis: how long it keeps an idle connection open. Deployed, a load balancer pools
// connections to it and may send a request on one after up to its idle timeout (60 s), so the server must not be the
// side that closes first.
import type { Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { DEFAULT_LIMITS } from "./config.ts";
import { StreamHub } from "./hub.ts";
import { NO_METRICS } from "./metrics.ts";
import { createStreamServer, HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS } from "./server.ts";

let server: Server;
let port: number;

beforeAll(async () => {
  const log = createLogger("stream-test", { level: "error" });
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
