/**
 * The times a request may carry (docs/api.md, Conventions): the forms common clients send are read, to the ms.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ASSETS } from "../contract/markets.ts";
import { parseUnits, USD_DECIMALS } from "../contract/money.ts";
import { parseJsonBody } from "./json-body.ts";
import { checkPercent, CLOSE_PERCENT_MAX, TRAILING_PERCENT_MAX } from "./routes/trade-terms.ts";
import { AMOUNT_EXAMPLES, AMOUNT_EXPECTED, candlesQuery, entryOrderRequest, signInRequest } from "./schemas.ts";

const AT_18 = Date.UTC(2026, 11, 5, 18, 0, 0);

/** `text` as the candles' `to` reads it, or undefined when it is refused. */
function readTo(text: string): number | undefined {
  const parsed = candlesQuery.safeParse({ asset: "ETH", interval: "1m", to: text });
  return parsed.success ? parsed.data.to : undefined;
}

describe("a time in a request", () => {
  it("takes any number of fractional digits and drops those past the millisecond, never rounding up", () => {
    expect(readTo("2026-12-05T18:00:00.123456+00:00")).toBe(AT_18 + 123); // Python's isoformat()
    expect(readTo("2026-12-05T18:00:00.123999999Z")).toBe(AT_18 + 123); // Java's Instant, Go's RFC3339Nano
    expect(readTo("2026-12-05T19:00:00.5+01:00")).toBe(AT_18 + 500);
    expect(readTo("2026-12-05T18:00:00.1234567890123456789Z")).toBe(AT_18 + 123); // 40 characters, the most
    expect(readTo("1969-12-31T23:59:59.9999Z")).toBe(-1); // truncated toward earlier before the epoch too
    expect(readTo("2026-12-05T18:00:00.123Z")).toBe(AT_18 + 123);
  });

  it("takes t and z in lowercase, as RFC 3339 allows", () => {
    expect(readTo("2026-12-05t18:00:00z")).toBe(AT_18);
    expect(readTo("2026-12-05t18:00:00.25z")).toBe(AT_18 + 250);
    expect(readTo("2026-12-05t19:00:00+01:00")).toBe(AT_18);
  });

  it("still takes a time without seconds (ISO 8601), as it always has", () => {
    expect(readTo("2026-12-05T18:00Z")).toBe(AT_18);
    expect(readTo("2026-12-05T13:30-04:30")).toBe(AT_18);
  });

  it("refuses what is not one of those forms, or names no real day or time", () => {
    for (const text of [
      "2026-12-05T18:00:00.Z", // a point without digits
      "2026-12-05T18:00.5Z", // a fraction without seconds
      "2026-12-05 18:00:00Z",
      "2026-12-05T18:00:00",
      "2026-12-05T18:00:00x",
      "2026-02-30T18:00:00.123456Z",
      "2026-12-05T24:00:00.000001Z",
      "2026-12-05T18:00:00.12345678901234567890Z", // 41 characters: over the bound
    ])
      expect(readTo(text), text).toBeUndefined();
  });

  it("is read the same way for an entry order's expiresAt", () => {
    // As the API reads a body (json-body.ts): leverage comes as a JSON number.
    const order = (expiresAt: string) =>
      entryOrderRequest.safeParse(
        parseJsonBody(
          JSON.stringify({
            asset: "ETH",
            side: "long",
            type: "limit",
            price: "4200",
            margin: "100",
            leverage: 10,
            expiresAt,
          }),
        ),
      );
    const parsed = order("2026-12-05t19:00:00.123456+01:00");
    expect(parsed.success && parsed.data.expiresAt).toBe(AT_18 + 123);
    expect(order("2026-12-05T18:00:00.Z").success).toBe(false);
  });
});

describe("a sign-in address", () => {
  const takes = (email: string) => signInRequest.safeParse({ email }).success;

  it("takes what mail systems take, IDN top-level domains in their xn-- form among them", () => {
    for (const email of [
      "ada@example.com",
      " Ada.Lovelace+news@Example.COM ",
      "o'brien@example.ie",
      "a_b-c@sub.example.co.uk",
      "a@123.example",
      "a@ex--ample.com", // a hyphen inside a label, an IDN's own among them
      "a@example.xn--p1ai",
      `${"x".repeat(64)}@example.com`,
      `a@${"b".repeat(63)}.com`,
    ])
      expect(takes(email), email).toBe(true);
  });

  it("refuses a local part over 64 characters, a label over 63, a label with a hyphen at either end", () => {
    for (const email of [
      `${"x".repeat(65)}@example.com`,
      `a@${"b".repeat(64)}.com`,
      "a@example-.com",
      "a@-example.com",
      "a@sub.-example.com",
      "a@example.xn--",
      "a@example.xn--p1ai-",
    ])
      expect(takes(email), email).toBe(false);
  });

  it("refuses a local part starting with its +tag, which leaves no inbox before it", () => {
    expect(takes("+@example.com")).toBe(false);
    expect(takes("+news@example.com")).toBe(false);
    expect(takes("ada+@example.com")).toBe(true);
  });

  it("refuses the rest zod's email check refused", () => {
    for (const email of ["not-an-email", "a@example.c", "a@example.com.", "a..b@example.com", ".a@example.com"])
      expect(takes(email), email).toBe(false);
  });
});

describe("an amount's examples", () => {
  it("are taken by every amount field of every asset and both percents, so the next check takes what was shown", () => {
    expect(AMOUNT_EXPECTED).toBe('a positive decimal such as "10" or "12.5"');
    for (const example of AMOUNT_EXAMPLES) {
      expect(parseUnits(example, USD_DECIMALS)).toMatchObject({ ok: true });
      for (const asset of ASSETS) {
        const price = parseUnits(example, asset.priceDecimals, asset.maxPriceTicks);
        expect(price, `${asset.symbol} price ${example}`).toMatchObject({ ok: true });
        const quantity = parseUnits(example, asset.quantityDecimals);
        expect(quantity, `${asset.symbol} quantity ${example}`).toMatchObject({ ok: true });
        if (quantity.ok) expect(quantity.units).toBeGreaterThanOrEqual(asset.minQuantitySteps);
      }
      // A part of a trade to close, and a trailing stop's percent, whose maximum is below 100
      expect(() => checkPercent("percent", example, "INVALID_AMOUNT", CLOSE_PERCENT_MAX), example).not.toThrow();
      expect(
        () => checkPercent("trailingStop.percent", example, "INVALID_TRAILING_STOP", TRAILING_PERCENT_MAX),
        example,
      ).not.toThrow();
    }
  });
});

describe("a candles `from` after now", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is refused naming the latest time taken, a minute after now, as the bound rather than as now", () => {
    vi.useFakeTimers({ now: AT_18 });
    const from = "2026-12-05T18:01:30Z";
    const parsed = candlesQuery.safeParse({ asset: "ETH", interval: "1m", from });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]).toMatchObject({
      path: ["from"],
      params: { expected: "a time no later than 2026-12-05T18:01:00.000Z (a minute after now)" },
    });
  });
});
