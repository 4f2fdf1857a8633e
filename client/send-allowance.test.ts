import { describe, expect, it } from "vitest";
import { SendAllowance } from "./send-allowance.ts";

describe("SendAllowance", () => {
  it("lets a second's worth go at once, then one per 1/rate s; refills to a second's worth, no more", () => {
    const allowance = new SendAllowance(4, 0);
    for (let i = 0; i < 4; i++) {
      expect(allowance.waitMs(0)).toBe(0);
      allowance.take(0);
    }
    expect(allowance.waitMs(0)).toBe(250);
    expect(allowance.waitMs(249)).toBeGreaterThan(0);
    expect(allowance.waitMs(250)).toBe(0);
    allowance.take(250);
    expect(allowance.waitMs(10_000)).toBe(0); // idle for long: refilled, to the burst and no further
    for (let i = 0; i < 4; i++) allowance.take(10_000);
    expect(allowance.waitMs(10_000)).toBe(250);
  });

  it("a rate under one a second allows one at a time; no rate, anything at once", () => {
    const slow = new SendAllowance(0.5, 0);
    expect(slow.burst).toBe(1);
    slow.take(0);
    expect(slow.waitMs(0)).toBe(2_000);
    const none = new SendAllowance(Number.POSITIVE_INFINITY, 0);
    for (let i = 0; i < 1_000; i++) none.take(0);
    expect(none.waitMs(0)).toBe(0);
  });
});
