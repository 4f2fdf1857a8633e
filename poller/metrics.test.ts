// The poller's metrics as an operator reads them: the help next to poller_heartbeats_total names every reason a
// market's heartbeats stop, by the log event feed-client.ts writes for it, so a stopped counter leads to its cause.
import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import { pollerMetrics } from "./metrics.ts";

describe("pollerMetrics", () => {
  it("says a market's heartbeats stop when it halts, when its book is silent and when its book refused a frame", async () => {
    const registry = new Registry();
    pollerMetrics(registry, ASSETS, () => ({ state: "connected", source: "backpack" }));
    const help = (await registry.metrics()).split("\n").find((l) => l.startsWith("# HELP poller_heartbeats_total "));
    expect(help).toContain("halted at the exchange");
    const feedClient = readFileSync(new URL("./feed-client.ts", import.meta.url), "utf8");
    for (const event of ["feed_book_silent", "feed_book_refused"]) {
      expect(feedClient).toContain(`"${event}"`); // the event the help points to is one the poller logs
      expect(help).toContain(event);
    }
  });
});
