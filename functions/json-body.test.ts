// Request bodies: money sent as a JSON number is read by its decimal text, never through a binary double; hostile
// bodies (deep nesting, "__proto__" keys, absurd exponents, repeated keys) are refused or stay harmless.
import { describe, expect, it } from "vitest";
import { API_ERRORS } from "./errors.ts";
import { JsonNumber, MAX_BODY_DEPTH, nestsTooDeep, parseJsonBody, plainDecimal } from "./json-body.ts";
import { BODY_LIMIT_BYTES, tooLargeMessage } from "./validate.ts";

function numberIn(text: string): JsonNumber {
  const body = parseJsonBody(text) as Record<string, unknown>;
  expect(body.n).toBeInstanceOf(JsonNumber);
  return body.n as JsonNumber;
}

describe("parseJsonBody", () => {
  it("keeps every digit of a number and reads it as a plain decimal", () => {
    const cases: [string, string | undefined][] = [
      ["0.1000000000000000055", "0.1000000000000000055"],
      ["12345678901234567890", "12345678901234567890"],
      ["1e-4", "0.0001"],
      ["1.5e3", "1500"],
      ["10.0000001", "10.0000001"],
      ["15.000", "15"],
      ["0", "0"],
      ["2E+2", "200"],
      ["-1", undefined],
      ["-0.5", undefined],
    ];
    for (const [text, decimal] of cases) {
      const n = numberIn(`{"n":${text}}`);
      expect(n.text).toBe(text);
      expect(n.decimalText(), text).toBe(decimal);
    }
    expect(Number(numberIn('{"n":0.1000000000000000055}').text)).toBe(0.1); // what JSON.parse would have kept
  });

  it("does not expand absurd exponents: 1e999999 is refused as a decimal, at once", () => {
    expect(numberIn('{"n":1e999999}').decimalText()).toBeUndefined();
    expect(numberIn('{"n":1e-999999}').decimalText()).toBeUndefined();
    expect(numberIn('{"n":1e41}').decimalText()).toBeUndefined();
    expect(numberIn('{"n":1e40}').decimalText()).toBe(`1${"0".repeat(40)}`);
    // Which way, for the answer (schemas.ts): an exponent of any length, read without building anything.
    const ranges = [
      "1e41",
      "0.5E+41",
      `1e${"9".repeat(400)}`,
      "1e-41",
      `1e-${"9".repeat(400)}`,
      "1e40",
      "1e-40",
      "-1e41",
    ];
    expect(ranges.map((text) => numberIn(`{"n":${text}}`).exponentRange())).toEqual([
      "above",
      "above",
      "above",
      "below",
      "below",
      undefined,
      undefined,
      undefined,
    ]);
    const long = "9".repeat(BODY_LIMIT_BYTES - 10);
    expect(numberIn(`{"n":${long}}`).decimalText()).toBe(long);
  });

  it("reads a whole number above zero by its value, past the exponents decimalText spells out too", () => {
    const z40 = "0".repeat(40);
    const z50 = "0".repeat(50);
    const value = (text: string) => numberIn(`{"n":${text}}`).positiveWhole(6);
    for (const [text, whole] of [
      ["1", 1],
      ["10.0", 10],
      ["100e-2", 1],
      ["999999", 999999],
      [`0.${z40}1e42`, 10], // past +40, yet 10
      [`0.${z40}101e43`, 101],
      [`1${z50}e-45`, 100000], // past -40, yet 100000
    ] as const)
      expect(value(text), text).toBe(whole);
    for (const text of ["1000000", "1e41", "1.5E+41", `1e${"9".repeat(400)}`, `1${z50}e-41`, `0.${z40}1e47`])
      expect(value(text), text).toBe("larger");
    for (const text of ["0", "0e50", "1.5", "1e-1", `1.${"0".repeat(42)}1e41`, `1e-${"9".repeat(400)}`, "-1", "-1e41"])
      expect(value(text), text).toBeUndefined();
    for (const text of [`15${z50}e-51`, `0.${z40}15e41`]) expect(value(text), `${text} is 1.5`).toBeUndefined();
  });

  it("spells a decimal one way: no leading zeros before the point, no trailing zeros after it", () => {
    expect(plainDecimal("0100", "50")).toBe("100.5");
    expect(plainDecimal("000", "000")).toBe("0");
    expect(plainDecimal("7", "")).toBe("7");
    // A body's worth of zeros before a last digit (linear: a regular expression would take quadratic time here).
    const zeros = "0".repeat(BODY_LIMIT_BYTES - 20);
    expect(plainDecimal(zeros, `${zeros}1`)).toBe(`0.${zeros}1`);
    expect(numberIn(`{"n":0.${zeros}1}`).decimalText()).toBe(`0.${zeros}1`);
  });

  it(`accepts ${MAX_BODY_DEPTH} levels of nesting and refuses one more, or a body-limit's worth`, () => {
    const nested = (depth: number) => `${"[".repeat(depth - 1)}{"a":1}${"]".repeat(depth - 1)}`;
    expect(parseJsonBody(nested(MAX_BODY_DEPTH))).toBeDefined();
    expect(parseJsonBody(nested(MAX_BODY_DEPTH + 1))).toBeUndefined();
    expect(parseJsonBody("[".repeat(BODY_LIMIT_BYTES))).toBeUndefined();
    expect(parseJsonBody('{"a":'.repeat(BODY_LIMIT_BYTES / 5))).toBeUndefined();
  });

  it("tells a body refused for its nesting from one refused for its syntax, so the 400 can say which", () => {
    const nested = (depth: number) => `${"[".repeat(depth - 1)}{"a":1}${"]".repeat(depth - 1)}`;
    expect(nestsTooDeep(nested(MAX_BODY_DEPTH + 1))).toBe(true);
    expect(nestsTooDeep("[".repeat(BODY_LIMIT_BYTES))).toBe(true);
    expect(nestsTooDeep(nested(MAX_BODY_DEPTH))).toBe(false);
    expect(nestsTooDeep("{not json")).toBe(false);
    expect(nestsTooDeep(`]${"[".repeat(40)}`)).toBe(false); // closes before it opens: broken, wherever it goes
    expect(nestsTooDeep(`{"a":"${"[".repeat(40)}"}`)).toBe(false); // brackets in a string do not nest
  });

  it("gives the body limit in the 413's message, and the size sent when known", () => {
    expect(tooLargeMessage()).toBe("The body is over the limit of 16,384 bytes (16 KiB).");
    expect(tooLargeMessage()).toBe(API_ERRORS.PAYLOAD_TOO_LARGE.message);
    expect(tooLargeMessage(1_234_567)).toBe(
      "The body is over the limit of 16,384 bytes (16 KiB); received 1,234,567 bytes.",
    );
  });

  it("keeps '__proto__' and 'constructor' keys as plain own fields, polluting nothing", () => {
    const body = parseJsonBody('{"__proto__":{"asset":"ETH"},"constructor":{"prototype":{"asset":"ETH"}}}');
    expect(body).toBeDefined();
    const fields = body as Record<string, unknown>;
    expect(Object.keys(fields)).toEqual(["__proto__", "constructor"]);
    expect(fields.asset).toBeUndefined();
    expect(Object.getPrototypeOf(fields)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).asset).toBeUndefined();
  });

  it("keeps the last value of a repeated key, as JSON.parse does", () => {
    expect(parseJsonBody('{"asset":"ETH","asset":1}')).toEqual({ asset: new JsonNumber("1") });
    expect(parseJsonBody('{"margin":"10","margin":"10"}')).toEqual({ margin: "10" });
  });

  it("refuses what is not JSON", () => {
    for (const text of ["", "{not json", "{", '{"a":1}}', '{"a":1,}', "\u0000", "[", "{'a':1}", '{"a":01}']) {
      expect(parseJsonBody(text), JSON.stringify(text)).toBeUndefined();
    }
  });
});
