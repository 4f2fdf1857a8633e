import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import { engineMetrics } from "./metrics.ts";

describe("engine metrics", () => {
  it("engine_recovery_duration_seconds shows the last restore, not the sum of every restore of the process", async () => {
    const registry = new Registry();
    const metrics = engineMetrics(registry, () => undefined);
    const restore = async () =>
      sample(parseSamples(await registry.metrics()), "engine_recovery_duration_seconds", { phase: "restore" });
    metrics.restored(2000); // at start
    expect(await restore()).toBe(2);
    metrics.restored(3000); // a standby's restore_again, hours later
    expect(await restore()).toBe(3);
  });
});
