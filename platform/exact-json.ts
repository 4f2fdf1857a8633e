/**
 * JSON from untrusted text with every number kept as its source text, on the `lossless-json` package.
 *
 * Why not `JSON.parse`: Backpack's `u` may exceed 2^53 and request bodies may send money as a JSON number that is
 * read by its decimal text; `JSON.parse` rounds both to a binary double before anyone sees the digits, and Node 20
 * gives a reviver no access to the source text.
 *
 * What this adds to the package, for input from the network:
 * - a nesting limit, checked before parsing: the package recurses once per level, so without it a body of a few
 *   kilobytes of `[` would exhaust the stack;
 * - `undefined` instead of an exception for anything that is not JSON;
 * - a repeated key keeps its last value, as `JSON.parse` does (the package refuses it by default).
 * The package stores a `"__proto__"` key as an own property, so no key can reach a prototype; numbers are handed
 * over as text and never converted, so `1e999999` is just nine characters.
 */
import { parse, type OnDuplicateKey } from "lossless-json";

/** A JSON number as it appeared in the text, e.g. `1802083092` or `123456789012345678901`. */
export class RawNumber {
  constructor(readonly text: string) {}
}

/** A JSON value whose numbers are `N`s. */
export type ExactJson<N extends RawNumber = RawNumber> =
  null | boolean | string | N | ExactJson<N>[] | { [key: string]: ExactJson<N> };

const keepLast: OnDuplicateKey = ({ newValue }) => newValue;

/**
 * The value of `text` with each number made by `toNumber` from its exact text, or `undefined` when the text is not
 * JSON (RFC 8259) or nests arrays/objects more than `maxDepth` deep. Never throws.
 */
export function parseExactJson<N extends RawNumber = RawNumber>(
  text: string,
  maxDepth: number,
  toNumber: (text: string) => N = (t) => new RawNumber(t) as N,
): ExactJson<N> | undefined {
  if (bracketNesting(text, maxDepth) !== undefined) return undefined;
  try {
    return parse(text, null, { parseNumber: toNumber, onDuplicateKey: keepLast }) as ExactJson<N>;
  } catch {
    return undefined;
  }
}

/**
 * What keeps `text` from the parser: "deeper" when the brackets outside strings nest deeper than `maxDepth`,
 * "unbalanced" when they close more than they open (before going deeper), undefined otherwise. On text the parser
 * accepts, this is exactly its nesting; on other text the parser fails no deeper than this count.
 */
export function bracketNesting(text: string, maxDepth: number): "deeper" | "unbalanced" | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 92 /* \ */) i++;
        else if (s === 34) break;
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > maxDepth) return "deeper";
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      if (--depth < 0) return "unbalanced";
    }
  }
  return undefined;
}

/** Whether `value` is a JSON object (not an array, not a number). */
export function isJsonObject<N extends RawNumber>(
  value: ExactJson<N> | undefined,
): value is { [key: string]: ExactJson<N> } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof RawNumber);
}
