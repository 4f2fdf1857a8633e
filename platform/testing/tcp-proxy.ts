/**
 * Test support: a TCP proxy in front of a server (Postgres, say) that goes down and comes back as a restarted server
 * does, on the same port. `cut()` resets every connection through it (the client reads ECONNRESET, as from a server
 * killed under it) and stops listening, so new connections are refused; `restore()` listens on the port again.
 * Otherwise it passes bytes both ways.
 */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";

export interface TcpProxy {
  readonly port: number;
  /** Resolves once every connection through it was reset and the port refuses connections. */
  cut(): Promise<void>;
  /** Resolves once it accepts connections on its port again. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(host: string, port: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    client.pipe(upstream);
    upstream.pipe(client);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  const listen = (on: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(on, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  await listen(0);
  const proxyPort = (server.address() as AddressInfo).port;
  const cut = async () => {
    const closed = stopListening();
    for (const s of sockets) s.resetAndDestroy();
    await closed;
  };
  return {
    port: proxyPort,
    cut,
    restore: () => listen(proxyPort),
    close: cut,
  };
}
