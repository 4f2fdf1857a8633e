// The stream's metrics as an operator reads them: a label a client picks cannot add series without bound.
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { CLOSE_CODES } from "../client/protocol.ts";
import { streamMetrics } from "./metrics.ts";

describe("stream_closes_total", () => {
  it("names the codes the stream uses, 1000, 1005 and 1006 by number, and counts any other a client sends as other", async () => {
    const registry = new Registry();
    const metrics = streamMetrics(registry);
    const known = [1000, 1005, 1006, ...Object.values(CLOSE_CODES)];
    for (const code of known) metrics.closed(code, "client");
    // What a client may send besides: any code RFC 6455 lets it, each a series of its own if taken as it comes.
    for (const code of [1003, 1008, 1014, 3000, 3999, 4000, 4321, 4999]) metrics.closed(code, "client");
    const values = (await registry.getSingleMetric("stream_closes_total")!.get()).values;
    const counts = Object.fromEntries(values.map((v) => [String(v.labels.code), v.value]));
    expect(counts).toEqual({ ...Object.fromEntries(known.map((code) => [String(code), 1])), other: 8 });
  });

  it("tells the server's closes from the client's: a client's own 4008 is not the server's too-slow", async () => {
    const registry = new Registry();
    const metrics = streamMetrics(registry);
    metrics.closed(CLOSE_CODES.tooSlow, "server");
    for (let i = 0; i < 3; i++) metrics.closed(CLOSE_CODES.tooSlow, "client");
    const values = (await registry.getSingleMetric("stream_closes_total")!.get()).values;
    expect(values.map((v) => ({ ...v.labels, value: v.value }))).toEqual([
      { code: "4008", by: "server", value: 1 },
      { code: "4008", by: "client", value: 3 },
    ]);
  });
});
