/**
 * The lease keeper's thread (lease-keeper.ts): its own Redis connection and event loop, so it renews the lease on
 * time whatever the main thread is doing, as long as the main thread's heartbeat is younger than `stallMs`.
 */
import { parentPort, workerData } from "node:worker_threads";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import { connectRedis } from "../../platform/redis.ts";
import { RENEW } from "./lease.ts";
import type { LeaseKeeperData } from "./lease-keeper.ts";

const data = workerData as LeaseKeeperData;
const port = parentPort!;
const log = createLogger("engine", { base: { role: "lease_keeper" } });
const redis = connectRedis(data.redisUrl, log, "engine-lease-keeper");
const lease = keyspace(data.prefix).engineLease;
const heartbeat = new BigInt64Array(data.heartbeat);

let stalled = false;
let renewed = false;
const timer = setInterval(
  () => {
    const silentMs = Date.now() - Number(Atomics.load(heartbeat, 0));
    if (silentMs > data.stallMs) {
      // Let it lapse: a main thread this slow serves nobody; a standby should lead.
      if (!stalled) log.error("leader_stalled", { silentMs, stallMs: data.stallMs });
      stalled = true;
      return;
    }
    stalled = false;
    redis.eval(RENEW, 1, lease, data.value, data.ttlMs).then(
      (held) => {
        if (held !== 1)
          clearInterval(timer); // another engine's now: nothing more to renew
        else if (!renewed) {
          renewed = true;
          port.postMessage("renewing");
        }
      },
      (err: unknown) => log.warn("lease_renew_failed", { error: err }),
    );
  },
  Math.max(20, Math.floor(data.ttlMs / 5)),
);

port.on("message", (message) => {
  if (message !== "stop") return;
  clearInterval(timer);
  redis.disconnect();
  port.close();
});
