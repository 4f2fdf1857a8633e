// The in-process WebSocket→TCP proxy the functions' Neon driver uses to reach a plain Postgres: only its own process's
// clients (no browser page, the per-proxy secret), only allow-listed addresses, raw bytes both ways, each side closed
// with the other.
import { once } from "node:events";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { createLogger } from "./log.ts";
import { startPgWsProxy, type PgWsProxy } from "./pg-ws-proxy.ts";

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

  /**
   * The error a WebSocket client gets for the upgrade; ws reports a non-101 answer as "Unexpected server response".
   * "opened" when the proxy let it through.
   */
  function refusal(proxyPort: number, path: string, origin?: string): Promise<string> {
    const ws = new WebSocket(`ws://127.0.0.1:${proxyPort}${path}`, origin === undefined ? {} : { origin });
    return new Promise((resolve) => {
      ws.on("error", (err) => resolve(err.message));
      ws.on("open", () => {
        ws.close();
        resolve("opened");
      });
    });
  }

  /** The upgrade path the proxy's own client uses for `address`. */
  const pathTo = (proxy: PgWsProxy, address: string) =>
    `/v1?address=${address}&secret=${encodeURIComponent(proxy.secret)}`;

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
      const secret = `&secret=${encodeURIComponent(proxy.secret)}`;
      expect(await refusal(proxy.port, pathTo(proxy, "127.0.0.1:22"))).toBe("Unexpected server response: 403");
      // The same server under another name is not on the list: no DNS-based equivalence.
      expect(await refusal(proxy.port, pathTo(proxy, `localhost:${echoPort}`))).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, pathTo(proxy, "example.com:443"))).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, `/v1?${secret.slice(1)}`)).toBe("Unexpected server response: 403");
      expect(await refusal(proxy.port, `/v2?address=127.0.0.1:${echoPort}${secret}`)).toBe(
        "Unexpected server response: 403",
      );
    } finally {
      await proxy.close();
    }
  });

  it("refuses browser pages (an Origin header) and clients without this proxy's secret, and logs why", async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("test", { sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    const proxy = await startPgWsProxy({ allow: [`127.0.0.1:${echoPort}`], log });
    try {
      const allowed = `127.0.0.1:${echoPort}`;
      // A browser always sends Origin on a WebSocket upgrade, whatever page opened it; the API's own client never does.
      expect(await refusal(proxy.port, pathTo(proxy, allowed), "https://evil.example")).toBe(
        "Unexpected server response: 403",
      );
      expect(await refusal(proxy.port, pathTo(proxy, allowed), "http://localhost:3000")).toBe(
        "Unexpected server response: 403",
      );
      // Another local process that found the port, but not the secret.
      expect(await refusal(proxy.port, `/v1?address=${allowed}`)).toBe("Unexpected server response: 401");
      expect(await refusal(proxy.port, `/v1?address=${allowed}&secret=guess`)).toBe("Unexpected server response: 401");

      // The proxy's own kind of client: no Origin, the secret.
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}${pathTo(proxy, allowed)}`);
      await once(ws, "open");
      expect((await echoed(ws, Buffer.from("ok"))).toString()).toBe("ok");
      ws.close();

      const refused = lines.filter((l) => l.event === "pg_proxy_refused");
      expect(refused.map((l) => [l.reason, l.status])).toEqual([
        ["browser_origin", 403],
        ["browser_origin", 403],
        ["no_secret", 401],
        ["no_secret", 401],
      ]);
      expect(refused[0]).toMatchObject({ origin: "https://evil.example", address: allowed });
      // The secret is never written to the log.
      expect(JSON.stringify(lines)).not.toContain(proxy.secret);
    } finally {
      await proxy.close();
    }
  });

  it("pipes binary bytes both ways and closes each side when the other closes", async () => {
    const proxy = await startPgWsProxy({ allow: [`127.0.0.1:${echoPort}`], log: quiet });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}${pathTo(proxy, `127.0.0.1:${echoPort}`)}`);
      await once(ws, "open");
      const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 256));
      expect((await echoed(ws, payload)).equals(payload)).toBe(true);

      // The client closes → the upstream TCP socket ends.
      const upstream = serverSockets.at(-1)!;
      const upstreamClosed = once(upstream, "close");
      ws.close();
      await upstreamClosed;

      // The upstream ends → the client's WebSocket closes.
      const ws2 = new WebSocket(`ws://127.0.0.1:${proxy.port}${pathTo(proxy, `127.0.0.1:${echoPort}`)}`);
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
