/**
 * Request bodies are parsed without losing a number's digits. Clients may send money as a JSON number, "read by
 * its decimal text": `JSON.parse` would turn `0.1000000000000000055` or `12345678901234567890` into a nearby
 * binary double first. Bodies go through the exact parser instead (platform/exact-json.ts), and every number
 * arrives as a JsonNumber carrying its source text; the schemas (schemas.ts) decide what a number may be.
 */
import { bracketNesting, parseExactJson, RawNumber, type ExactJson } from "../platform/exact-json.ts";

/** Our bodies are flat objects; the limit only bounds the parser's recursion on hostile ones. */
export const MAX_BODY_DEPTH = 32;

/**
 * The largest exponent a number is spelt out with, either way: far past every amount's range and precision, and it
 * keeps `1e999999` from becoming a million-character string.
 */
export const MAX_EXPONENT = 40;

const NUMBER_PARTS = /^(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** A JSON number from a request body, as written. */
export class JsonNumber extends RawNumber {
  /**
   * The number as a plain decimal ("1.5e3" → "1500"), or undefined when it is negative or its exponent is past
   * ±MAX_EXPONENT (`exponentRange` says which way).
   */
  decimalText(): string | undefined {
    const m = NUMBER_PARTS.exec(this.text);
    if (m === null) return undefined;
    const exponent = Number(m[3] ?? "0");
    if (Math.abs(exponent) > MAX_EXPONENT) return undefined;
    const digits = m[1]! + (m[2] ?? "");
    const point = m[1]!.length + exponent;
    const whole = point <= 0 ? "0" : digits.slice(0, point).padEnd(point, "0");
    const fraction = point < 0 ? "0".repeat(-point) + digits : digits.slice(Math.max(point, 0));
    return plainDecimal(whole, fraction);
  }

  /**
   * "above" when the exponent is over MAX_EXPONENT, "below" when it is under −MAX_EXPONENT; undefined otherwise, and
   * for a negative number (refused as such).
   */
  exponentRange(): "above" | "below" | undefined {
    // An exponent too long for a double reads as ±Infinity, which compares as it should.
    const exponent = Number(NUMBER_PARTS.exec(this.text)?.[3] ?? "0");
    return exponent > MAX_EXPONENT ? "above" : exponent < -MAX_EXPONENT ? "below" : undefined;
  }

  /**
   * Whether the number is a whole number above zero, read from its digits and exponent without spelling it out, so
   * past MAX_EXPONENT too: `1e41`, `1.5e41` and `100e-2` are, `0e50`, `1.5` and a negative number are not.
   */
  isPositiveWhole(): boolean {
    const m = NUMBER_PARTS.exec(this.text);
    if (m === null) return false;
    const fraction = m[2] ?? "";
    const digits = m[1]! + fraction;
    // Trailing zeros counted in a loop, as plainDecimal does, not with a regular expression.
    let zeros = 0;
    while (zeros < digits.length && digits[digits.length - 1 - zeros] === "0") zeros++;
    if (zeros === digits.length) return false;
    // An exponent too long for a double reads as ±Infinity, which compares as it should.
    return Number(m[3] ?? "0") - fraction.length + zeros >= 0;
  }
}

/**
 * A decimal's one spelling: no leading zeros before the point, no trailing zeros after it ("0100", "50" → "100.5").
 * In loops, not regular expressions: `/0+$/` takes quadratic time on a long run of zeros before a last digit, and a
 * body holds 16 KiB of digits.
 */
export function plainDecimal(whole: string, fraction: string): string {
  let start = 0;
  while (start < whole.length - 1 && whole[start] === "0") start++;
  let end = fraction.length;
  while (end > 0 && fraction[end - 1] === "0") end--;
  const w = whole.slice(start);
  return end === 0 ? w : `${w}.${fraction.slice(0, end)}`;
}

export type JsonValue = ExactJson<JsonNumber>;

const toJsonNumber = (text: string) => new JsonNumber(text);

/**
 * The parsed body, or undefined when the text is not JSON or nests deeper than MAX_BODY_DEPTH. Objects are plain
 * objects whose keys are all own properties (a `"__proto__"` key included), and a repeated key keeps its last
 * value, as with `JSON.parse`.
 */
export function parseJsonBody(text: string): JsonValue | undefined {
  return parseExactJson(text, MAX_BODY_DEPTH, toJsonNumber);
}

/**
 * Whether a body that parseJsonBody refused was refused for its nesting, past MAX_BODY_DEPTH, rather than its syntax:
 * the two answer with different messages. Text past the limit is not parsed, so it may be broken JSON as well.
 */
export function nestsTooDeep(text: string): boolean {
  return bracketNesting(text, MAX_BODY_DEPTH) === "deeper";
}

/**
 * Why a body that parseJsonBody refused for its syntax is not JSON: JSON.parse's words, which give the position
 * where the text stops being JSON (both parsers follow RFC 8259, so they fail on the same text).
 */
export function syntaxProblem(text: string): string {
  if (text.trim() === "") return "it is empty";
  try {
    JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  return "it could not be read";
}
