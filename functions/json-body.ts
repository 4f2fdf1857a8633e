/**
 * Request bodies are parsed without losing a number's digits. docs/api.md lets clients send money as a JSON number,
 * "read by its decimal text": `JSON.parse` would turn `0.1000000000000000055` or `12345678901234567890` into a
 * nearby binary double first. The body is parsed with the poller's lossless parser instead, and every number
 * arrives as a JsonNumber carrying its source text; the schemas (schemas.ts) decide what a number may be.
 */
import { parseLossless, RawNumber, type LosslessValue } from "../platform/lossless-json.ts";

/** A JSON number from a request body, as written. */
export class JsonNumber {
  constructor(readonly text: string) {}

  /** The number as a plain decimal ("1.5e3" → "1500"), or undefined when it is negative or absurdly scaled. */
  decimalText(): string | undefined {
    const m = /^(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(this.text);
    if (m === null) return undefined;
    const exponent = Number(m[3] ?? "0");
    if (Math.abs(exponent) > 40) return undefined;
    const digits = m[1]! + (m[2] ?? "");
    const point = m[1]!.length + exponent;
    const whole = point <= 0 ? "0" : digits.slice(0, point).padEnd(point, "0");
    const fraction = point < 0 ? "0".repeat(-point) + digits : digits.slice(Math.max(point, 0));
    const trimmedWhole = whole.replace(/^0+(?=\d)/, "");
    const trimmedFraction = fraction.replace(/0+$/, "");
    return trimmedFraction === "" ? trimmedWhole : `${trimmedWhole}.${trimmedFraction}`;
  }
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | { [key: string]: JsonValue };

/** The parsed body, or undefined when the text is not JSON. */
export function parseJsonBody(text: string): JsonValue | undefined {
  const value = parseLossless(text, 32);
  return value === undefined ? undefined : convert(value);
}

function convert(value: LosslessValue): JsonValue {
  if (value instanceof RawNumber) return new JsonNumber(value.text);
  if (Array.isArray(value)) return value.map(convert);
  if (value !== null && typeof value === "object") {
    const out: { [key: string]: JsonValue } = Object.create(null) as { [key: string]: JsonValue };
    for (const [k, v] of Object.entries(value)) out[k] = convert(v);
    return out;
  }
  return value;
}
