/**
 * The lease keeper's thread (lease-keeper.ts): its own Redis connection and event loop, so it renews the lease on
 * time whatever the main thread is doing, as long as the main thread's heartbeat is younger than `stallMs` and it
 * has not reported itself stuck. A tick that finds the lease extended by a publish less than a period ago sends
 * nothing: a busy leader's publishes keep it.
 */
import { parentPort, workerData } from "node:worker_threads";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { RENEW } from "./lease.ts";
import { EXTENDED_AT, HEARTBEAT_AT, monotonicMs, RENEWED_AT, STUCK, type LeaseKeeperData } from "./lease-keeper.ts";

const data = workerData as LeaseKeeperData;
const port = parentPort!;
const log = createLogger("engine", { base: { role: "lease_keeper" } });
const redis = connectRedis(data.redisUrl, log, "engine-lease-keeper");
const lease = keyspace(data.prefix).engineLease;
const words = new BigInt64Array(data.shared);
const everyMs = Math.max(20, Math.floor(data.ttlMs / 5));

let stalled = false;
let renewed = false;
let renewing = false;
let failing = false;
const timer = setInterval(() => {
  const now = Date.now();
  // On the monotonic clock both threads share: a wall clock stepped back must not make a stuck leader look alive.
  const silentMs = monotonicMs() - Number(Atomics.load(words, HEARTBEAT_AT));
  if (silentMs > data.stallMs) {
    // Let it lapse: a main thread this slow serves nobody; a standby should lead.
    if (!stalled) log.error("leader_stalled", { silentMs, stallMs: data.stallMs });
    stalled = true;
    return;
  }
  stalled = false;
  // The leader alive but without progress (a dead socket): it logs leader_stuck itself, and goes by the same limit.
  if (Atomics.load(words, STUCK) !== 0n) return;
  // The first renewal is always sent: it tells the leader that this thread and its connection work. A negative age
  // (the wall clock stepped back) skips nothing.
  const sincePublish = now - Number(Atomics.load(words, EXTENDED_AT));
  if (renewing || (renewed && sincePublish >= 0 && sincePublish < everyMs)) return;
  // One at a time, a failure logged once until one answers again (as the leader's own timer: leader.ts).
  renewing = true;
  redis
    .eval(RENEW, 1, lease, data.value, data.ttlMs)
    .then(
      (held) => {
        failing = false;
        if (held !== 1) {
          clearInterval(timer); // another engine's now: nothing more to renew
          port.postMessage("lost");
          return;
        }
        Atomics.store(words, RENEWED_AT, BigInt(now));
        if (!renewed) {
          renewed = true;
          port.postMessage("renewing");
        }
      },
      (err: unknown) => {
        if (!failing) log.warn("lease_renew_failed", { error: err });
        failing = true;
      },
    )
    .finally(() => (renewing = false));
}, everyMs);

port.on("message", (message) => {
  if (message !== "stop") return;
  clearInterval(timer);
  redis.disconnect();
  port.close();
});
