/**
 * The local Upstash REST peer (functions/testing/upstash-bridge.ts) in a process of its own, for `bench:api` with
 * BENCH_REDIS=upstash: in the load generator's process it would compete with it for the event loop. Started with
 * `fork`; its parent sends "counts" (answered with the commands run since the last "reset"), "reset" and "close".
 */
import { startUpstashBridge } from "../testing/upstash-bridge.ts";

export type PeerMessage = { url: string; token: string } | { counts: Record<string, number> };

const send = (message: PeerMessage) => process.send?.(message);
const bridge = await startUpstashBridge({
  redisUrl: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  token: process.env.PEER_TOKEN ?? "bench",
  delayMs: Number(process.env.PEER_DELAY_MS ?? 0),
});
process.on("message", (message) => {
  if (message === "counts") send({ counts: Object.fromEntries(bridge.commandCounts()) });
  else if (message === "reset") bridge.resetCommandCounts();
  else if (message === "close") void bridge.close().then(() => process.exit(0));
});
process.on("disconnect", () => void bridge.close().then(() => process.exit(0)));
send({ url: bridge.url, token: bridge.token });
