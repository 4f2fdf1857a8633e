import { MessageChannel } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { stopRequestedOn } from "./stop-request.ts";

describe("the follower thread's stop request", () => {
  it("is seen while still queued on the port, before any event delivered it", () => {
    const { port1, port2 } = new MessageChannel();
    const stop = new AbortController();
    const requested = stopRequestedOn(port2, stop);
    expect(requested()).toBe(false);
    port1.postMessage("stop");
    // No await: the event loop has not turned, so no "message" event could have delivered it.
    expect(requested()).toBe(true);
    expect(stop.signal.aborted).toBe(true);
    port1.close();
  });

  it("is seen once delivered as an event (its listener aborted), and is false without a port", async () => {
    const { port1, port2 } = new MessageChannel();
    const stop = new AbortController();
    expect(stopRequestedOn(null, stop)()).toBe(false);
    const delivered = new Promise<void>((resolve) =>
      port2.once("message", (message) => {
        if (message === "stop") stop.abort();
        resolve();
      }),
    );
    port1.postMessage("stop");
    await delivered;
    expect(stopRequestedOn(port2, stop)()).toBe(true);
    port1.close();
  });
});
