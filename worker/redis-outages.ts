/**
 * Whether the worker's Redis connections are down, for its watchdog (watchdog.ts). A connection is down while ioredis
 * has none and reconnects, or has one on which Redis answered but is not ready yet (a Redis loading its AOF after a
 * restart answers only that it is loading): its commands wait in ioredis' offline queue and go once it is ready, so a
 * wait then is an outage. A connection on which nothing has answered since it connected is not down but silent (a
 * frozen Redis, or a dead proxy in front of one, accepts connections all the same): the watchdog bounds it from the
 * moment it connected, as it bounds one that stops answering once ready.
 */
import type { Redis } from "ioredis";
import type { RedisOutages } from "./watchdog.ts";

export function watchRedisOutages(connections: readonly Redis[]): RedisOutages & { readonly close: () => void } {
  let upAt = -Infinity;
  const answered = new Set<Redis>();
  const down = (connection: Redis) =>
    connection.status !== "ready" && (connection.status !== "connect" || answered.has(connection));
  // ioredis sets `status` and emits the event of the same name on the next tick, before any timer runs and before the
  // new connection's first answer can come: what the watchdog looks at is current.
  const listeners = connections.map((connection) => {
    const onConnect = () => {
      upAt = performance.now();
      answered.delete(connection);
      connection.stream.once("data", () => answered.add(connection));
    };
    const onReady = () => void (upAt = performance.now());
    connection.on("connect", onConnect).on("ready", onReady);
    return () => connection.off("connect", onConnect).off("ready", onReady);
  });
  return {
    upSince: () => (connections.some(down) ? undefined : upAt),
    close: () => listeners.forEach((off) => off()),
  };
}
