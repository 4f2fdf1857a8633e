import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isAfterId, isoTime, parseInputId } from "./step.ts";

describe("isoTime", () => {
  it("matches Date#toISOString for any time from 1970 to 9999", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253_402_300_799_999 }), (ms) => {
        expect(isoTime(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 20_000 },
    );
  });

  it("is right at calendar edges: epoch, leap days, century rules, year ends", () => {
    for (const text of [
      "1970-01-01T00:00:00.000Z",
      "2000-02-29T23:59:59.999Z",
      "2100-03-01T00:00:00.000Z",
      "2024-12-31T23:59:59.001Z",
      "9999-12-31T23:59:59.999Z",
    ]) {
      expect(isoTime(Date.parse(text))).toBe(text);
    }
  });
});

describe("parseInputId", () => {
  it("reads <ms>-<seq>", () => {
    expect(parseInputId("1736172777506-0")).toEqual({ ms: 1736172777506, seq: 0 });
    expect(parseInputId("5-12")).toEqual({ ms: 5, seq: 12 });
  });

  it("throws on anything else (a runner bug, never user input)", () => {
    for (const bad of ["", "-", "5", "5-", "-5", "a-1", "1-a", "1-2-3", "1 -2", "99999999999999999999-0"]) {
      expect(() => parseInputId(bad), bad).toThrow(/malformed input id/);
    }
  });
});

describe("parseInputId bounds", () => {
  it("refuses log times past year 9999, which no clock gives and ISO 8601 cannot show", () => {
    expect(parseInputId("253402300799999-0")).toEqual({ ms: 253_402_300_799_999, seq: 0 });
    expect(() => parseInputId("253402300800000-0")).toThrow(/malformed input id/);
    expect(() => parseInputId("8640000000000001-0")).toThrow(/malformed input id/);
  });
});

describe("isAfterId", () => {
  it("orders stream ids by milliseconds, then sequence, as numbers (not text)", () => {
    expect(isAfterId("10-0", "9-5")).toBe(true);
    expect(isAfterId("9-10", "9-9")).toBe(true);
    expect(isAfterId("9-9", "9-9")).toBe(false);
    expect(isAfterId("9-9", "10-0")).toBe(false);
    expect(isAfterId("100-0", "99-999")).toBe(true); // "100-0" < "99-999" as text
  });
});
