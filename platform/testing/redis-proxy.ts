/**
 * Test support: a TCP proxy in front of Redis that fails as a network does. Otherwise it passes bytes both ways.
 * - `dropReplyTo(marker)`: passes the next request that contains `marker` on to Redis, swallows the reply (so Redis
 *   has run the command) and closes both sockets, as a blip does. A client that resends unanswered commands after
 *   reconnecting (ioredis by default) then runs that command a second time.
 * - `freeze()`: from then on no byte passes either way and the sockets stay open, as behind a dead peer; `held()`
 *   counts the requests (the writes a client made) that arrived since, unanswered and dropped. `freezeOn(marker)`
 *   freezes when a request containing `marker` arrives, dropping it too: mid-conversation, as a server or a path
 *   that stops answering between two statements of a transaction. `thaw()` lets bytes pass again: what was dropped
 *   stays lost, so a connection that waited for an answer then waits for ever (its peer is as good as dead), while
 *   new connections work.
 * - `cut()`: resets every connection (the client reads ECONNRESET, as from a server killed under it) and stops
 *   listening, so new connections are refused, until `mend()` listens on the same port again: a server that went down
 *   and came back.
 * It passes bytes whatever the protocol, so it stands in front of Postgres as well.
 */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

export interface RedisProxy {
  readonly port: number;
  /** Resolves once a request containing `marker` has run in Redis and its reply was dropped with the connection. */
  dropReplyTo(marker: string): Promise<void>;
  freeze(): void;
  /** Resolves once a request containing `marker` arrived, was dropped, and everything froze. */
  freezeOn(marker: string): Promise<void>;
  thaw(): void;
  /** The client writes that arrived while frozen. */
  held(): number;
  /** Resolves once every connection through it was reset and its port refuses connections. */
  cut(): Promise<void>;
  /** Resolves once it accepts connections on its port again (at once if it does). */
  mend(): Promise<void>;
  close(): Promise<void>;
}

export async function startRedisProxy(redisUrl: string): Promise<RedisProxy> {
  const target = new URL(redisUrl);
  let armed: { marker: string; dropped: () => void } | undefined;
  let freezeArmed: { marker: string; frozen: () => void } | undefined;
  let frozen = false;
  let held = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    let swallowing: (() => void) | undefined;
    client.on("data", (chunk: Buffer) => {
      if (freezeArmed !== undefined && chunk.includes(freezeArmed.marker)) {
        frozen = true;
        freezeArmed.frozen();
        freezeArmed = undefined;
      }
      if (frozen) return void held++;
      if (armed !== undefined && chunk.includes(armed.marker)) {
        swallowing = armed.dropped;
        armed = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (frozen) return;
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
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    dropReplyTo: (marker) => new Promise((resolve) => (armed = { marker, dropped: resolve })),
    freeze: () => (frozen = true),
    freezeOn: (marker) => new Promise((resolve) => (freezeArmed = { marker, frozen: resolve })),
    thaw: () => (frozen = false),
    held: () => held,
    cut: async () => {
      const closed = stopListening();
      for (const s of sockets) s.resetAndDestroy();
      await closed;
    },
    mend: () => (server.listening ? Promise.resolve() : listen(port)),
    close: () => {
      const closed = stopListening();
      for (const s of sockets) s.destroy();
      return closed;
    },
  };
}
