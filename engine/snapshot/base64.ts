/**
 * Base64 (RFC 4648, with padding, no line breaks) written as ASCII bytes into a caller's buffer, for the snapshot
 * chunks that Postgres stores as text (postgres-store.ts). `Buffer#toString("base64")` is faster on its own, but
 * it makes a JavaScript string per chunk: a string of several MB lives in the old generation, and only a full
 * collection frees it, so a snapshot of some 20 chunks sets off full collections of the snapshotting thread's whole
 * heap, several times the CPU of writing the chunks as bytes.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const PAD = 0x3d; // "="
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Any 12 bits → their two characters as one 16-bit store, in the machine's byte order. */
const PAIRS = new Uint16Array(4096);
for (let i = 0; i < 4096; i++) {
  const first = ALPHABET.charCodeAt(i >> 6);
  const second = ALPHABET.charCodeAt(i & 63);
  PAIRS[i] = LITTLE_ENDIAN ? first | (second << 8) : (first << 8) | second;
}

/** Characters base64 makes of `bytes` bytes. */
export function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/**
 * A reusable output buffer for base64 of up to `maxBytes` input bytes. Its own ArrayBuffer, so the 16-bit view
 * is aligned.
 */
export class Base64Writer {
  private readonly out: Uint8Array;
  private readonly pairs: Uint16Array;

  constructor(readonly maxBytes: number) {
    const size = base64Length(maxBytes);
    const buffer = new ArrayBuffer(size + (size % 2));
    this.out = new Uint8Array(buffer, 0, size);
    this.pairs = new Uint16Array(buffer);
  }

  /** Base64 of `bytes` as ASCII: a view of this writer's buffer, valid until the next call. */
  encode(bytes: Uint8Array): Uint8Array {
    if (bytes.length > this.maxBytes)
      throw new RangeError(`base64: ${bytes.length} bytes, this writer takes at most ${this.maxBytes}`);
    const whole = bytes.length - (bytes.length % 3);
    const pairs = this.pairs;
    let p = 0;
    for (let i = 0; i < whole; i += 3) {
      const group = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
      pairs[p++] = PAIRS[group >>> 12]!;
      pairs[p++] = PAIRS[group & 4095]!;
    }
    const out = this.out;
    let o = p * 2;
    const left = bytes.length - whole;
    if (left > 0) {
      const group = (bytes[whole]! << 16) | (left === 2 ? bytes[whole + 1]! << 8 : 0);
      out[o++] = ALPHABET.charCodeAt(group >>> 18);
      out[o++] = ALPHABET.charCodeAt((group >>> 12) & 63);
      out[o++] = left === 2 ? ALPHABET.charCodeAt((group >>> 6) & 63) : PAD;
      out[o++] = PAD;
    }
    return out.subarray(0, o);
  }
}
