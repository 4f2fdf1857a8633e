// The exact parser agrees with JSON.parse on every valid document (numbers aside, which it keeps as text), refuses
// what JSON.parse refuses without ever throwing, keeps big numbers digit for digit, and holds against hostile
// text: nesting beyond the limit, "__proto__"/"constructor" keys, repeated keys, absurd exponents.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isJsonObject, parseExactJson, RawNumber, type ExactJson } from "./exact-json.ts";

function plain(value: ExactJson | undefined): unknown {
  if (value instanceof RawNumber) return Number(value.text);
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object" && value !== null)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

function jsonParses(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe("parseExactJson", () => {
  it("reads every valid JSON document as JSON.parse does, numbers aside", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        expect(plain(parseExactJson(text, 10))).toEqual(JSON.parse(text));
      }),
    );
  });

  it("refuses exactly what JSON.parse refuses on arbitrary text, and never throws", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'{}[]:,"\\ 0123456789.-+eEtrufalsn\n\u0001') }), (text) => {
        // Nesting beyond the depth limit is the one deliberate difference; these strings are too short for it.
        expect(parseExactJson(text, 64) !== undefined).toBe(jsonParses(text));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 60 }), (text) => {
        expect(parseExactJson(text, 64) !== undefined).toBe(jsonParses(text));
      }),
    );
  });

  it("keeps integers above 2^53, absurd exponents and number spellings as written", () => {
    const value = parseExactJson('{"u":123456789012345678901234,"x":[1.50,-0,2E+3,1e999999,-1e-999999]}', 4);
    expect(value).toEqual({
      u: new RawNumber("123456789012345678901234"),
      x: [
        new RawNumber("1.50"),
        new RawNumber("-0"),
        new RawNumber("2E+3"),
        new RawNumber("1e999999"),
        new RawNumber("-1e-999999"),
      ],
    });
  });

  it("makes numbers with the given factory", () => {
    class Money extends RawNumber {}
    const value = parseExactJson('{"m":0.1000000000000000055}', 2, (t) => new Money(t));
    expect(isJsonObject(value) && value.m).toEqual(new Money("0.1000000000000000055"));
    expect(isJsonObject(value) && value.m instanceof Money).toBe(true);
  });

  it("decodes string escapes and keeps '__proto__' and 'constructor' as ordinary own keys", () => {
    const text = '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"s":"a\\"b\\u00e9\\n"}';
    const value = parseExactJson(text, 4) as Record<string, unknown>;
    expect(value.s).toBe('a"b\u00e9\n');
    expect(Object.keys(value)).toEqual(["__proto__", "constructor", "s"]);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(value.polluted).toBeUndefined();
    expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toEqual({ polluted: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("keeps the last value of a repeated key, as JSON.parse does", () => {
    for (const text of ['{"a":1,"a":2}', '{"a":{"x":1},"b":0,"a":[true]}', '{"a":"x","a":"x"}', '{"a":1,"a":1.0}']) {
      expect(plain(parseExactJson(text, 4)), text).toEqual(JSON.parse(text));
    }
    expect(parseExactJson('{"a":1,"a":1.0}', 4)).toEqual({ a: new RawNumber("1.0") });
  });

  it("refuses nesting deeper than the limit, counting brackets inside strings as text", () => {
    expect(parseExactJson("[[[1]]]", 3)).toEqual([[[new RawNumber("1")]]]);
    expect(parseExactJson('[{"a":"[[[[{{{{"}]', 2)).toEqual([{ a: "[[[[{{{{" }]);
    expect(parseExactJson('[{"a":"\\"[[["}]', 2)).toEqual([{ a: '"[[[' }]);
    expect(parseExactJson("[[[[1]]]]", 3)).toBeUndefined();
    expect(parseExactJson("[[[[]]]]", 3)).toBeUndefined();
    expect(parseExactJson('{"a":{"b":{"c":{}}}}', 3)).toBeUndefined();
  });

  it("refuses nesting far beyond the stack's depth with undefined, not a throw", () => {
    for (const text of ["[".repeat(200_000), `${"[".repeat(200_000)}${"]".repeat(200_000)}`, '{"a":'.repeat(100_000)]) {
      expect(parseExactJson(text, 32)).toBeUndefined();
    }
  });

  it("refuses what is not JSON", () => {
    for (const text of [
      "",
      " ",
      "{",
      "[1,]",
      '{"a":1,}',
      "01",
      "1.",
      ".5",
      "+1",
      "NaN",
      "'a'",
      '"\u0001"',
      "{} {}",
      "][",
    ]) {
      expect(parseExactJson(text, 8), JSON.stringify(text)).toBeUndefined();
    }
  });
});
