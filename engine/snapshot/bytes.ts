/**
 * Compact binary primitives for snapshots: LEB128 varints for whole numbers up to 2^53 (zigzag for signed),
 * length-prefixed UTF-8 strings. A growable writer and a bounds-checked reader.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const TWO_POW_31 = 2 ** 31;
const TWO_POW_52 = 2 ** 52;

export class ByteWriter {
  private buf: Uint8Array;
  private pos = 0;

  constructor(initialBytes = 1 << 16) {
    this.buf = new Uint8Array(initialBytes);
  }

  get length(): number {
    return this.pos;
  }

  /** Starts over, keeping the buffer (grown to at least `minBytes`): a periodic snapshotter reuses one writer. */
  reset(minBytes = 0): void {
    this.pos = 0;
    this.ensure(minBytes);
  }

  /** The bytes written: a view of the writer's buffer (no copy; large snapshots are tens of MB). */
  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Appends bytes as they are (a length, if any, is the caller's). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  /** Unsigned varint of a safe non-negative integer. */
  uint(v: number): void {
    if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v)))
      throw new RangeError(`not a safe unsigned integer: ${v}`);
    this.ensure(8);
    const buf = this.buf;
    let p = this.pos;
    if (v < TWO_POW_31) {
      while (v >= 0x80) {
        buf[p++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
    } else {
      while (v >= 0x80) {
        buf[p++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
    }
    buf[p++] = v;
    this.pos = p;
  }

  /** Signed varint (zigzag) of an integer with −2^52 ≤ v < 2^52 (zigzag maps that range onto 0 … 2^53 − 1). */
  int(v: number): void {
    // Checked here, not left to `uint`: v * 2 of a half-integer is a whole number and would encode silently.
    if (!(Number.isInteger(v) && v >= -TWO_POW_52 && v < TWO_POW_52))
      throw new RangeError(`not an integer in [-2^52, 2^52): ${v}`);
    this.uint(v >= 0 ? v * 2 : -v * 2 - 1);
  }

  string(s: string): void {
    const n = s.length;
    if (n < 128) {
      // Short ASCII strings (ids, keys, codes) are most of what we write: copy them byte by byte.
      this.ensure(1 + n);
      const buf = this.buf;
      const start = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + 1 + i] = c;
      }
      if (i === n) {
        buf[start] = n;
        this.pos = start + 1 + n;
        return;
      }
    }
    this.ensure(5 + n * 3);
    const start = this.pos;
    // The byte length is known only after encoding: encode 5 bytes ahead (room for any length prefix), then
    // write the prefix and slide the bytes back to meet it.
    const { written } = encoder.encodeInto(s, this.buf.subarray(start + 5));
    this.pos = start;
    this.uint(written);
    this.buf.copyWithin(this.pos, start + 5, start + 5 + written);
    this.pos += written;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = Math.max(this.buf.length * 2, 16);
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }
}

/**
 * Where a streamed buffer's bytes come from: blocks until at least `end` bytes are there (or no more will come) and
 * returns how many are there now. The reader calls it only when it runs out, so a whole buffer costs nothing.
 */
export type ByteSource = (end: number) => number;

export class ByteReader {
  /** Bytes readable now: the whole buffer, or what a streaming source has delivered so far. */
  private end: number;

  /**
   * Reads `buf` from `pos`. With `more`, the buffer fills while it is read (a snapshot still loading) and the
   * reader asks `more` whenever it reaches the end of what is there.
   */
  constructor(
    private readonly buf: Uint8Array,
    private pos = 0,
    private readonly more?: ByteSource,
  ) {
    this.end = more === undefined ? buf.length : 0;
  }

  get done(): boolean {
    return this.pos === this.buf.length;
  }

  get position(): number {
    return this.pos;
  }

  /** The whole buffer's length, delivered yet or not. */
  get length(): number {
    return this.buf.length;
  }

  skip(n: number): void {
    if (this.pos + n > this.end) this.need(this.pos + n);
    this.pos += n;
  }

  u8(): number {
    if (this.pos >= this.end) this.need(this.pos + 1);
    return this.buf[this.pos++]!;
  }

  uint(): number {
    const buf = this.buf;
    let p = this.pos;
    let result = 0;
    let scale = 1;
    for (;;) {
      if (p >= this.end) this.need(p + 1);
      const b = buf[p++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) throw new RangeError("varint too long");
    }
    this.pos = p;
    if (result > Number.MAX_SAFE_INTEGER) throw new RangeError("varint out of range");
    return result;
  }

  /** Steps over `count` varints, refusing what `uint` refuses (more than 8 bytes, above MAX_SAFE_INTEGER). */
  skipVarints(count: number): void {
    const buf = this.buf;
    let p = this.pos;
    // Room for every one of them at its longest (8 bytes): no byte needs its own bounds check.
    if (p + count * 8 <= this.end) {
      for (; count > 0; count--) {
        let b = buf[p++]!;
        for (let length = 1; b >= 0x80; length++) {
          b = buf[p++]!;
          if (length === 7 && b >= 0x10) throw new RangeError(b >= 0x80 ? "varint too long" : "varint out of range");
        }
      }
      this.pos = p;
      return;
    }
    let length = 0;
    while (count > 0) {
      if (p >= this.end) this.need(p + 1);
      const b = buf[p++]!;
      length++;
      // 7 bytes hold 49 bits; an 8th may add 4 more (2^53 − 1 at most) and must be the last.
      if (length === 8 && b >= 0x10) throw new RangeError(b >= 0x80 ? "varint too long" : "varint out of range");
      if (b < 0x80) {
        count--;
        length = 0;
      }
    }
    this.pos = p;
  }

  /**
   * Steps over a string that must be 1–`maxLength` bytes of printable ASCII without spaces (0x21–0x7e), so that
   * `string()` at the same place later cannot fail.
   */
  skipToken(maxLength: number): void {
    const n = this.uint();
    if (n < 1 || n > maxLength) throw new RangeError(`token of ${n} bytes (1–${maxLength} allowed)`);
    const start = this.pos;
    if (start + n > this.end) this.need(start + n);
    const buf = this.buf;
    for (let i = start; i < start + n; i++) {
      const b = buf[i]!;
      if (b < 0x21 || b > 0x7e) throw new RangeError("token holds a byte that is not printable ASCII");
    }
    this.pos = start + n;
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  string(): string {
    const n = this.uint();
    const buf = this.buf;
    const start = this.pos;
    if (start + n > this.end) this.need(start + n);
    this.pos += n;
    if (n <= 64) {
      let ascii = true;
      for (let i = start; i < start + n; i++) if (buf[i]! >= 0x80) ascii = false;
      // TextDecoder costs more per call than building a short ASCII string directly.
      if (ascii) return String.fromCharCode.apply(null, buf.subarray(start, start + n) as unknown as number[]);
    }
    return decoder.decode(buf.subarray(start, start + n));
  }

  /** Out of bytes before `end`: wait for a streaming source to deliver them, or fail. */
  private need(end: number): void {
    if (end <= this.buf.length && this.more !== undefined) this.end = Math.min(this.more(end), this.buf.length);
    if (end > this.end) throw new RangeError("snapshot truncated");
  }
}

/**
 * Whether the token `skipToken` checked at `offset` in `bytes` (a length, then printable ASCII: one byte per
 * character) is `other`: a string, or the offset of another such token. Nothing is decoded or allocated.
 */
export function tokenEquals(bytes: Uint8Array, offset: number, other: string | number): boolean {
  const length = tokenLength(bytes, offset);
  const start = offset + (length < 0x80 ? 1 : 2);
  if (typeof other === "string") {
    if (other.length !== length) return false;
    for (let i = 0; i < length; i++) if (bytes[start + i] !== other.charCodeAt(i)) return false;
    return true;
  }
  if (tokenLength(bytes, other) !== length) return false;
  const otherStart = other + (length < 0x80 ? 1 : 2);
  for (let i = 0; i < length; i++) if (bytes[start + i] !== bytes[otherStart + i]) return false;
  return true;
}

/** A token's length varint: one byte below 128, two up to 16383 (tokens are at most a few hundred bytes). */
function tokenLength(bytes: Uint8Array, offset: number): number {
  const first = bytes[offset]!;
  return first < 0x80 ? first : (first & 0x7f) | (bytes[offset + 1]! << 7);
}
