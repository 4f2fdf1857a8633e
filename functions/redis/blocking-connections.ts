/**
 * Connections for blocking commands. A BLPOP holds its connection until it returns, so every concurrent waiter needs
 * its own: this hands out an idle one or opens a new one, up to `maxBusy` in use at once, takes back the ones still
 * fit for use, keeps at most `maxIdle` of them (a burst of waiters must not leave a burst of open sockets behind),
 * and closes all on `close()`. Past `maxBusy` it hands out none, and the caller waits another way (the ioredis
 * adapter polls on its command connection): each connection is one of Redis's `maxclients` and one of the process's
 * file descriptors, shared with everything else, and a stalled engine would otherwise have every waiting request
 * hold one. Used by the ioredis adapter's BLPOP (the Upstash REST adapter has no blocking commands and polls).
 */
import type { Redis } from "ioredis";

export interface BlockingConnections {
  /** An idle connection, or a new one; undefined when `maxBusy` are in use. */
  acquire(): Redis | undefined;
  /** Gives a connection back: kept for reuse when `reusable`, ready and there is room; disconnected otherwise. */
  release(connection: Redis, reusable: boolean): void;
  /** Disconnects idle and busy connections alike; a command still blocked on one rejects. */
  close(): void;
}

export interface BlockingLimits {
  /** Idle connections kept for reuse. */
  readonly maxIdle: number;
  /** Connections in use at once. */
  readonly maxBusy: number;
}

export function createBlockingConnections(open: () => Redis, limits: BlockingLimits): BlockingConnections {
  const idle: Redis[] = [];
  const busy = new Set<Redis>();
  let closed = false;
  return {
    acquire() {
      if (closed) throw new Error("blocking connections are closed");
      if (busy.size >= limits.maxBusy) return undefined;
      const connection = idle.pop() ?? open();
      busy.add(connection);
      return connection;
    },
    release(connection, reusable) {
      busy.delete(connection);
      if (!closed && reusable && connection.status === "ready" && idle.length < limits.maxIdle) idle.push(connection);
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
