/**
 * A small JSON parser that keeps every number as its source text.
 *
 * Why: Backpack's `u` (update id) may exceed 2^53 and its times are microseconds; `JSON.parse` would round such
 * integers silently, and Node 20 has no reviver access to the source text. Frames are small (a few hundred bytes),
 * so a hand-written parser costs microseconds. It accepts exactly the JSON grammar (RFC 8259) and returns
 * `undefined` for anything else, never throws; a depth limit keeps hostile input from exhausting the stack.
 */

/** A JSON number as it appeared in the text, e.g. `1802083092` or `123456789012345678901`. */
export class RawNumber {
  constructor(readonly text: string) {}
}

export type LosslessValue = null | boolean | string | RawNumber | LosslessValue[] | LosslessObject;
export interface LosslessObject {
  [key: string]: LosslessValue;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const INVALID = Symbol("invalid");

export function parseLossless(text: string, maxDepth = 16): LosslessValue | undefined {
  let i = 0;

  const skipSpace = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else return;
    }
  };

  const parseString = (): string | typeof INVALID => {
    const start = i; // at the opening quote
    let escaped = false;
    for (i++; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 34 /* " */) {
        i++;
        const body = text.slice(start, i);
        if (!escaped) return body.slice(1, -1);
        try {
          // JSON.parse validates and decodes the escapes of this one string token exactly.
          return JSON.parse(body) as string;
        } catch {
          return INVALID;
        }
      }
      if (c < 0x20) return INVALID; // raw control characters are not allowed inside JSON strings
      if (c === 92 /* \ */) {
        escaped = true;
        i++; // skip the escaped character; JSON.parse checks it
      }
    }
    return INVALID;
  };

  const parseValue = (depth: number): LosslessValue | typeof INVALID => {
    if (depth > maxDepth) return INVALID;
    skipSpace();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = Object.create(null) as LosslessObject; // no prototype: a "__proto__" key is just a key
      skipSpace();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') return INVALID;
        const key = parseString();
        if (key === INVALID) return INVALID;
        skipSpace();
        if (text[i] !== ":") return INVALID;
        i++;
        const value = parseValue(depth + 1);
        if (value === INVALID) return INVALID;
        obj[key] = value;
        skipSpace();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else return INVALID;
      }
    }
    if (c === "[") {
      i++;
      const arr: LosslessValue[] = [];
      skipSpace();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        const value = parseValue(depth + 1);
        if (value === INVALID) return INVALID;
        arr.push(value);
        skipSpace();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else return INVALID;
      }
    }
    if (c === '"') return parseString();
    if (text.startsWith("true", i)) return ((i += 4), true);
    if (text.startsWith("false", i)) return ((i += 5), false);
    if (text.startsWith("null", i)) return ((i += 4), null);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m === null) return INVALID;
    i += m[0].length;
    return new RawNumber(m[0]);
  };

  const value = parseValue(0);
  if (value === INVALID) return undefined;
  skipSpace();
  return i === text.length ? value : undefined;
}

export function isLosslessObject(value: LosslessValue | undefined): value is LosslessObject {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof RawNumber);
}
