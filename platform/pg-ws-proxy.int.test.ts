// The in-process WebSocket→TCP proxy the functions' Neon driver uses to reach a plain Postgres: only allow-listed
// addresses, raw bytes both ways, each side closed with the other.
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { createLogger } from "./log.ts";
import { startPgWsProxy } from "./pg-ws-proxy.ts";

const quiet = createLogger("test", { sink: () => undefined });

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
});
