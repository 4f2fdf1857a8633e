/**
 * Test support: a TCP proxy in front of Redis that can lose one reply with its connection, as a network blip does.
 * Armed with `dropReplyTo(marker)`, it passes the next request that contains `marker` on to Redis, swallows the
 * reply (so Redis has run the command) and closes both sockets. A client that resends unanswered commands after
 * reconnecting (ioredis by default) then runs that command a second time. Otherwise it passes bytes both ways.
 */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

export interface ReplyDroppingProxy {
  readonly port: number;
  /** Resolves once a request containing `marker` has run in Redis and its reply was dropped with the connection. */
  dropReplyTo(marker: string): Promise<void>;
  close(): Promise<void>;
}

export async function startReplyDroppingProxy(redisUrl: string): Promise<ReplyDroppingProxy> {
  const target = new URL(redisUrl);
  let armed: { marker: string; dropped: () => void } | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    let swallowing: (() => void) | undefined;
    client.on("data", (chunk: Buffer) => {
      if (armed !== undefined && chunk.includes(armed.marker)) {
        swallowing = armed.dropped;
        armed = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (swallowing === undefined) {
        client.write(chunk);
        return;
      }
      client.destroy();
      upstream.destroy();
      swallowing();
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    dropReplyTo: (marker) => new Promise((resolve) => (armed = { marker, dropped: resolve })),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
