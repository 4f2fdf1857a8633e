// The lossless parser agrees with JSON.parse on every valid document (numbers aside, which it keeps as text),
// refuses what JSON.parse refuses, and keeps big integers digit for digit.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseLossless, RawNumber, type LosslessValue } from "./lossless-json.ts";

function plain(value: LosslessValue | undefined): unknown {
  if (value instanceof RawNumber) return Number(value.text);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object" && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

describe("parseLossless", () => {
  it("reads every valid JSON document as JSON.parse does, numbers aside", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        expect(plain(parseLossless(text, 10))).toEqual(JSON.parse(text));
      }),
    );
  });

  it("refuses exactly what JSON.parse refuses on arbitrary text", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'{}[]:,"\\ 0123456789.-+eEtrufalsn\n\u0001') }), (text) => {
        let valid = true;
        try {
          JSON.parse(text);
        } catch {
          valid = false;
        }
        // Nesting beyond the depth limit is the one deliberate difference; these strings are too short for it.
        expect(parseLossless(text, 64) !== undefined).toBe(valid);
      }),
      { numRuns: 2000 },
    );
  });

  it("keeps integers above 2^53 and number spellings as written", () => {
    const value = parseLossless('{"u":123456789012345678901234,"x":[1.50,-0,2E+3]}');
    expect(value).toEqual({
      u: new RawNumber("123456789012345678901234"),
      x: [new RawNumber("1.50"), new RawNumber("-0"), new RawNumber("2E+3")],
    });
  });

  it("decodes string escapes and treats __proto__ as an ordinary key", () => {
    const value = parseLossless('{"__proto__":{"polluted":true},"s":"a\\"b\\u00e9\\n"}') as Record<string, unknown>;
    expect(value.s).toBe('a"b\u00e9\n');
    expect(Object.keys(value)).toEqual(["__proto__", "s"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses nesting deeper than the limit", () => {
    expect(parseLossless("[[[1]]]", 3)).toEqual([[[new RawNumber("1")]]]);
    expect(parseLossless("[[[[1]]]]", 3)).toBeUndefined();
  });
});
