import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_UNITS,
  divFloor,
  formatBigUnits,
  formatUnits,
  mulDivFloor,
  formatUsd,
  mulWithin,
  parseUnits,
  parseUsd,
  trimDecimal,
} from "./money.ts";

const units = (n: number) => ({ ok: true, units: n });
const failure = (reason: string) => ({ ok: false, reason });

describe("parseUnits", () => {
  it.each([
    ["4303.93", 2, 430393],
    ["0.5", 6, 500_000],
    ["12", 0, 12],
    ["12", 2, 1200],
    ["0", 6, 0],
    ["0.000001", 6, 1],
    // leading zeros are only digits
    ["007.50", 2, 750],
    ["0000", 3, 0],
    // fewer decimals than the scale pad: 1.5 at 4 decimals is 15000 units
    ["1.5", 4, 15_000],
  ])("parses %s at %i decimals to %i units", (text, decimals, expected) => {
    expect(parseUnits(text, decimals)).toEqual(units(expected));
  });

  it("accepts zeros beyond the scale without rounding", () => {
    expect(parseUnits("1.50", 1)).toEqual(units(15));
    expect(parseUnits("2000.500000", 2)).toEqual(units(200_050));
    expect(parseUnits("7.0", 0)).toEqual(units(7));
  });

  it("refuses a non-zero digit beyond the scale, even after zeros", () => {
    expect(parseUnits("1.55", 1)).toEqual(failure("TOO_MANY_DECIMALS"));
    expect(parseUnits("1.5000001", 2)).toEqual(failure("TOO_MANY_DECIMALS"));
    expect(parseUnits("0.0000001", 6)).toEqual(failure("TOO_MANY_DECIMALS"));
    expect(parseUnits("7.5", 0)).toEqual(failure("TOO_MANY_DECIMALS"));
  });

  it.each(["", "1e5", "1E5", "-1", "+1", " 1", "1 ", "1 000", "1.", ".5", ".", "0x10", "1,5", "1.2.3", "abc", "１"])(
    "refuses %j as malformed",
    (text) => {
      expect(parseUnits(text, 6)).toEqual(failure("MALFORMED"));
    },
  );

  it("refuses huge values as out of range", () => {
    expect(parseUnits("9".repeat(30), 6)).toEqual(failure("OUT_OF_RANGE"));
    expect(parseUnits("1" + "0".repeat(40), 0)).toEqual(failure("OUT_OF_RANGE"));
    // 1e15 whole units would be 1e21 micros, far above MAX_UNITS (1e15 micros)
    expect(parseUnits("1000000000000000", 6)).toEqual(failure("OUT_OF_RANGE"));
  });

  it("accepts exactly MAX_UNITS and refuses one unit more", () => {
    // MAX_UNITS = 1e15 micros = 1,000,000,000 USD
    expect(parseUnits("1000000000", 6)).toEqual(units(MAX_UNITS));
    expect(parseUnits("1000000000.000000", 6)).toEqual(units(MAX_UNITS));
    expect(parseUnits("1000000000.000001", 6)).toEqual(failure("OUT_OF_RANGE"));
    expect(parseUnits("1000000001", 6)).toEqual(failure("OUT_OF_RANGE"));
  });

  it("honours a custom max exactly at and one unit above it", () => {
    // ETH's maxPriceTicks: 100,000,000 ticks at 2 decimals = 1,000,000.00 USD
    expect(parseUnits("1000000", 2, 100_000_000)).toEqual(units(100_000_000));
    expect(parseUnits("999999.99", 2, 100_000_000)).toEqual(units(99_999_999));
    expect(parseUnits("1000000.01", 2, 100_000_000)).toEqual(failure("OUT_OF_RANGE"));
    expect(parseUnits("1000001", 2, 100_000_000)).toEqual(failure("OUT_OF_RANGE"));
    expect(parseUnits("10", 0, 10)).toEqual(units(10));
    expect(parseUnits("11", 0, 10)).toEqual(failure("OUT_OF_RANGE"));
  });

  it("parseUsd reads micros or nothing", () => {
    expect(parseUsd("10000")).toBe(10_000_000_000);
    expect(parseUsd("0.123456")).toBe(123_456);
    expect(parseUsd("0.1234567")).toBeUndefined();
    expect(parseUsd("-5")).toBeUndefined();
  });
});

describe("trimDecimal", () => {
  it.each([
    ["4303.9300000000", "4303.93"],
    ["4300.2550000000", "4300.255"],
    ["5.000000", "5"],
    ["0.0000000000", "0"],
    ["-0.000000", "0"],
    ["-1.500000", "-1.5"],
    ["100", "100"],
  ])("writes %s as %s", (text, expected) => {
    expect(trimDecimal(text)).toBe(expected);
  });
});

describe("formatUnits", () => {
  it.each([
    [430393, 2, "4303.93"],
    [10_000_000_000, 6, "10000"],
    [1_500_000, 6, "1.5"],
    [1, 6, "0.000001"],
    [100, 2, "1"],
    [120, 2, "1.2"],
    [0, 6, "0"],
    [0, 0, "0"],
    [123, 0, "123"],
    [-1_500_000, 6, "-1.5"],
    [-1, 2, "-0.01"],
    [-95_480_000, 6, "-95.48"],
    [MAX_UNITS, 6, "1000000000"],
    [MAX_UNITS - 1, 6, "999999999.999999"],
    [Number.MAX_SAFE_INTEGER, 0, "9007199254740991"],
    [Number.MAX_SAFE_INTEGER, 6, "9007199254.740991"],
  ])("formats %i at %i decimals as %s", (n, decimals, expected) => {
    expect(formatUnits(n, decimals)).toBe(expected);
  });

  it("never uses exponent notation", () => {
    // String(1e21) would be "1e+21"; safe integers stay below that, and small ones must not become "1e-7"
    expect(formatUnits(1, 18)).toBe("0.000000000000000001");
    expect(formatUsd(1)).toBe("0.000001");
  });

  it("round-trips with parseUnits", () => {
    for (const [text, decimals] of [
      ["4303.93", 2],
      ["0.000001", 6],
      ["1000000000", 6],
      ["65.6", 1],
    ] as const) {
      const parsed = parseUnits(text, decimals);
      if (!parsed.ok) throw new Error(`did not parse ${text}`);
      expect(formatUnits(parsed.units, decimals)).toBe(text);
    }
  });

  it.each([1.5, 0.1, Number.NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53)])("throws on %s", (n) => {
    expect(() => formatUnits(n, 6)).toThrow(RangeError);
  });
});

describe("divFloor", () => {
  it.each([
    // [a, b, ⌊a/b⌋]
    [0, 7, 0],
    [10, 5, 2],
    [11, 5, 2],
    [14, 5, 2],
    [1_000_000_000, 200_001, 4999], // 200001 × 4999 = 999,804,999 ≤ 1e9 < 200001 × 5000
    [1_000_000_000, 200_000, 5000],
  ])("%i / %i → %i", (a, b, floor) => {
    expect(divFloor(a, b)).toBe(floor);
  });

  it("stays exact next to 2^53", () => {
    const max = Number.MAX_SAFE_INTEGER; // 2^53 − 1 = 9007199254740991
    // 2 × 4503599627370495 = 9007199254740990, remainder 1
    expect(divFloor(max, 2)).toBe(4_503_599_627_370_495);
    // 10 × 900719925474099 = 9007199254740990, remainder 1
    expect(divFloor(max, 10)).toBe(900_719_925_474_099);
    // the quotient is 1 + 1/(2^53 − 2): a float sits within one ulp of 1, the answer must not
    expect(divFloor(max, max - 1)).toBe(1);
    expect(divFloor(max - 1, max)).toBe(0);
    expect(divFloor(max, max)).toBe(1);
    // 3 × 3002399751580330 = 9007199254740990; max − 1 is a multiple of 3
    expect(divFloor(max - 1, 3)).toBe(3_002_399_751_580_330);
    // 94906266 × 94906264 = 94906265² − 1 = 9007199136250224, just below 2^53
    expect(divFloor(9_007_199_136_250_224, 94_906_264)).toBe(94_906_266);
    expect(divFloor(9_007_199_136_250_223, 94_906_264)).toBe(94_906_265);
    expect(divFloor(9_007_199_136_250_225, 94_906_264)).toBe(94_906_266);
  });
});

describe("mulDivFloor", () => {
  it("is ⌊a·b/d⌋ exactly, below and beyond 2^53", () => {
    expect(mulDivFloor(100_000_000, 1, 3)).toBe(33_333_333); // 1e8 / 3 = 33,333,333.33…
    expect(mulDivFloor(100_000_000, 2, 3)).toBe(66_666_666);
    expect(mulDivFloor(7, 0, 5)).toBe(0);
    // 1e13 × 9,999,999,999,999 / 1e13 = 9,999,999,999,999: the product (~1e26) is far past 2^53
    expect(mulDivFloor(10_000_000_000_000, 9_999_999_999_999, 10_000_000_000_000)).toBe(9_999_999_999_999);
    // (2^53 − 1) × 2 passes 2^53; its third does not, and is the bigint quotient exactly
    expect(BigInt(mulDivFloor(Number.MAX_SAFE_INTEGER, 2, 3))).toBe(((2n ** 53n - 1n) * 2n) / 3n);
  });

  it("matches a bigint reference", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000_000_000_000 }),
        fc.integer({ min: 0, max: 10_000_000_000_000 }),
        fc.integer({ min: 1, max: 10_000_000_000_000 }),
        (a, b, d) => {
          fc.pre((BigInt(a) * BigInt(b)) / BigInt(d) <= BigInt(Number.MAX_SAFE_INTEGER));
          expect(BigInt(mulDivFloor(a, b, d))).toBe((BigInt(a) * BigInt(b)) / BigInt(d));
        },
      ),
      { numRuns: 5_000 },
    );
  });
});

describe("mulWithin", () => {
  it("returns the exact product up to the limit and nothing above it", () => {
    // 1e6 × 1e9 = 1e15 = MAX_UNITS
    expect(mulWithin(1_000_000, 1_000_000_000)).toBe(MAX_UNITS);
    expect(mulWithin(1_000_000, 1_000_000_001)).toBeUndefined();
    expect(mulWithin(MAX_UNITS, 1)).toBe(MAX_UNITS);
    expect(mulWithin(MAX_UNITS + 1, 1)).toBeUndefined();
    expect(mulWithin(0, MAX_UNITS)).toBe(0);
  });

  it("honours a custom limit", () => {
    expect(mulWithin(10, 10, 100)).toBe(100);
    expect(mulWithin(10, 11, 100)).toBeUndefined();
    // 1e9 micros = 1000 USD: margin 100 USD × leverage 10 is exactly at it, × 11 is over
    expect(mulWithin(100_000_000, 10, 1_000_000_000)).toBe(1_000_000_000);
    expect(mulWithin(100_000_000, 11, 1_000_000_000)).toBeUndefined();
  });

  it("refuses products far beyond 2^53 instead of returning a rounded float", () => {
    expect(mulWithin(2 ** 52, 4)).toBeUndefined();
    expect(mulWithin(MAX_UNITS, 1000)).toBeUndefined();
  });
});

describe("formatUnits against an independent reference", () => {
  // Reference: BigInt division, then trim, no shared code with the implementation.
  const reference = (units: number, decimals: number): string => {
    const big = BigInt(units);
    const neg = big < 0n;
    const abs = neg ? -big : big;
    const scale = 10n ** BigInt(decimals);
    const frac = (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
    const text = frac === "" ? (abs / scale).toString() : `${abs / scale}.${frac}`;
    return neg ? `-${text}` : text;
  };

  it("formats every safe amount at every scale exactly, and parses back to the same units", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -MAX_UNITS, max: MAX_UNITS }),
        fc.integer({ min: 0, max: 9 }),
        (units, decimals) => {
          const text = formatUnits(units, decimals);
          expect(text).toBe(reference(units, decimals));
          if (units >= 0) expect(parseUnits(text, decimals)).toEqual({ ok: true, units });
        },
      ),
      { numRuns: 20_000 },
    );
  });
});

describe("formatBigUnits", () => {
  it("formats past 2^53 exactly, sign and trailing zeros as formatUnits does", () => {
    expect(formatBigUnits(12_345_678_901_234_567_890n, 6)).toBe("12345678901234.56789");
    expect(formatBigUnits(-9_007_199_254_740_993_000_000n, 6)).toBe("-9007199254740993");
    expect(formatBigUnits(-1n, 6)).toBe("-0.000001");
    expect(formatBigUnits(0n, 6)).toBe("0");
    expect(formatBigUnits(1_234n, 0)).toBe("1234");
  });

  it("agrees with formatUnits on every safe amount", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -MAX_UNITS, max: MAX_UNITS }),
        fc.integer({ min: 0, max: 9 }),
        (units, decimals) => {
          expect(formatBigUnits(BigInt(units), decimals)).toBe(formatUnits(units, decimals));
        },
      ),
      { numRuns: 5_000 },
    );
  });
});
