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
   * The number's value when it is a whole number above zero of at most `maxDigits` digits; "larger" when it is a
   * whole number of more; undefined when it is not a whole number above zero (`0`, `1.5`, a negative number). Read
   * from its digits and exponent by where its first and last non-zero digits sit, so a long exponent is never spelt
   * out, and judged by the value, not by the exponent's sign: `1e41` and `1{50 zeros}e-41` (1e9) are "larger",
   * `0.{40 zeros}1e42` is 10 and `15{50 zeros}e-51` (1.5) is not whole. `maxDigits` stays under 16, where a double
   * holds every whole number.
   */
  positiveWhole(maxDigits: number): number | "larger" | undefined {
    const m = NUMBER_PARTS.exec(this.text);
    if (m === null) return undefined;
    const digits = m[1]! + (m[2] ?? "");
    // Leading and trailing zeros counted in loops, as plainDecimal does, not with regular expressions.
    let first = 0;
    while (first < digits.length && digits[first] === "0") first++;
    if (first === digits.length) return undefined;
    let end = digits.length;
    while (digits[end - 1] === "0") end--;
    // Digits before the point once the exponent is applied, from the first non-zero one: 2 for `10`, `1e1` and
    // `0.01e3`. An exponent too long for a double reads as ±Infinity, which compares as it should.
    const wholeDigits = m[1]!.length - first + Number(m[3] ?? "0");
    if (end - first > wholeDigits) return undefined; // a non-zero digit after the point
    if (wholeDigits > maxDigits) return "larger";
    return Number(digits.slice(first, end).padEnd(wholeDigits, "0"));
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
