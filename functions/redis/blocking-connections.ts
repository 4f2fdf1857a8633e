/**
 * Connections for blocking commands. A BLPOP holds its connection until it returns, so every concurrent waiter needs
 * its own: this hands out an idle one or opens a new one, takes back the ones still fit for use, keeps at most
 * `maxIdle` of them (a burst of waiters must not leave a burst of open sockets behind), and closes all on `close()`.
 * Used by the ioredis adapter's BLPOP (the Upstash REST adapter has no blocking commands and polls instead).
 */
import type { Redis } from "ioredis";

export interface BlockingConnections {
  /** An idle connection, or a new one. */
  acquire(): Redis;
  /** Gives a connection back: kept for reuse when `reusable`, ready and there is room; disconnected otherwise. */
  release(connection: Redis, reusable: boolean): void;
  /** Disconnects idle and busy connections alike; a command still blocked on one rejects. */
  close(): void;
}

export function createBlockingConnections(open: () => Redis, maxIdle: number): BlockingConnections {
  const idle: Redis[] = [];
  const busy = new Set<Redis>();
  let closed = false;
  return {
    acquire() {
      if (closed) throw new Error("blocking connections are closed");
      const connection = idle.pop() ?? open();
      busy.add(connection);
      return connection;
    },
    release(connection, reusable) {
      busy.delete(connection);
      if (!closed && reusable && connection.status === "ready" && idle.length < maxIdle) idle.push(connection);
      else connection.disconnect();
    },
    close() {
      closed = true;
      for (const connection of [...idle, ...busy]) connection.disconnect();
      idle.length = 0;
      busy.clear();
    },
  };
}
