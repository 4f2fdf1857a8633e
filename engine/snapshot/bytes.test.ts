import { describe, expect, it } from "vitest";
import { ByteReader, ByteWriter, tokenEquals } from "./bytes.ts";

const MAX = Number.MAX_SAFE_INTEGER; // 2^53 − 1

function written(write: (w: ByteWriter) => void, initialBytes = 1): number[] {
  const w = new ByteWriter(initialBytes);
  write(w);
  return [...w.finish()];
}

function reader(bytes: number[]): ByteReader {
  return new ByteReader(Uint8Array.from(bytes));
}

describe("ByteWriter / ByteReader: unsigned varints", () => {
  // Expected encodings are LEB128 by hand: 7 bits per byte, low group first, high bit = "more follows".
  const cases: [number, number[]][] = [
    [0, [0x00]],
    [1, [0x01]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [16_384, [0x80, 0x80, 0x01]],
    [2 ** 31 - 1, [0xff, 0xff, 0xff, 0xff, 0x07]],
    [2 ** 31, [0x80, 0x80, 0x80, 0x80, 0x08]],
    [2 ** 32, [0x80, 0x80, 0x80, 0x80, 0x10]],
    [MAX, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]],
  ];

  it.each(cases)("uint %d encodes as its LEB128 bytes and reads back", (value, bytes) => {
    expect(written((w) => w.uint(value))).toEqual(bytes);
    const r = reader(bytes);
    expect(r.uint()).toBe(value);
    expect(r.done).toBe(true);
  });

  it("round-trips a run of values around every 7-bit boundary, back to back", () => {
    const values: number[] = [];
    for (let bits = 0; bits <= 53; bits++) {
      const p = 2 ** bits;
      for (const v of [p - 1, p, p + 1]) if (v >= 0 && v <= MAX) values.push(v);
    }
    const w = new ByteWriter(1);
    for (const v of values) w.uint(v);
    const r = new ByteReader(w.finish());
    expect(values.map(() => r.uint())).toEqual(values);
    expect(r.done).toBe(true);
  });

  it.each([
    ["negative", -1],
    ["fractional", 0.5],
    ["fractional above 2^31", 2 ** 31 + 0.5],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["2^53 (MAX_SAFE + 1)", 2 ** 53],
    ["far above MAX_SAFE", 2 ** 60],
  ])("refuses a %s uint with a RangeError and writes nothing", (_name, value) => {
    const w = new ByteWriter(1);
    w.uint(5);
    expect(() => w.uint(value)).toThrow(RangeError);
    expect([...w.finish()]).toEqual([5]);
  });
});

describe("ByteWriter / ByteReader: signed (zigzag) varints", () => {
  // Zigzag: 0 → 0, −1 → 1, 1 → 2, −2 → 3, …, i.e. v ≥ 0 → 2v, v < 0 → −2v − 1.
  it.each([
    [0, [0x00]],
    [-1, [0x01]],
    [1, [0x02]],
    [-2, [0x03]],
    [63, [0x7e]],
    [-64, [0x7f]],
    [64, [0x80, 0x01]],
  ])("int %d encodes as its zigzag varint", (value, bytes) => {
    expect(written((w) => w.int(value))).toEqual(bytes);
    expect(reader(bytes).int()).toBe(value);
  });

  it("round-trips negatives and positives up to the ±2^52 edge", () => {
    const values = [
      -1,
      1,
      -(2 ** 31),
      2 ** 31,
      -(2 ** 31) - 1,
      2 ** 32 + 7,
      -(2 ** 40) + 3,
      1_000_000_000_000_000,
      -1_000_000_000_000_000,
      2 ** 52 - 1,
      -(2 ** 52) + 1,
      -(2 ** 52),
    ];
    const w = new ByteWriter(1);
    for (const v of values) w.int(v);
    const r = new ByteReader(w.finish());
    expect(values.map(() => r.int())).toEqual(values);
    expect(r.done).toBe(true);
  });

  it("maps the two ends of the range onto the largest zigzag codes", () => {
    // −2^52 → 2^53 − 1 and 2^52 − 1 → 2^53 − 2: the whole safe unsigned range is used, nothing more.
    expect(written((w) => w.int(-(2 ** 52)))).toEqual(written((w) => w.uint(MAX)));
    expect(written((w) => w.int(2 ** 52 - 1))).toEqual(written((w) => w.uint(MAX - 1)));
  });

  it.each([
    ["2^52 (zigzag would be 2^53)", 2 ** 52],
    ["-2^52 - 1", -(2 ** 52) - 1],
    ["a half-integer (2 × 0.5 is whole)", 0.5],
    ["a negative half-integer", -1.5],
    ["NaN", Number.NaN],
    ["-Infinity", Number.NEGATIVE_INFINITY],
  ])("refuses %s with a RangeError and writes nothing", (_name, value) => {
    const w = new ByteWriter(1);
    expect(() => w.int(value)).toThrow(RangeError);
    expect(w.length).toBe(0);
  });
});

describe("ByteWriter / ByteReader: strings", () => {
  it("writes a byte-length prefix followed by the UTF-8 bytes", () => {
    expect(written((w) => w.string(""))).toEqual([0x00]);
    expect(written((w) => w.string("abc"))).toEqual([0x03, 0x61, 0x62, 0x63]);
    expect(written((w) => w.string("é"))).toEqual([0x02, 0xc3, 0xa9]);
    expect(written((w) => w.string("😀"))).toEqual([0x04, 0xf0, 0x9f, 0x98, 0x80]);
  });

  it.each([
    ["empty", ""],
    ["ASCII", "alice-01_x"],
    ["accents", "naïve café, crème brûlée, Ångström"],
    ["CJK", "日本語のテキスト"],
    ["emoji incl. a ZWJ family and flags", "👩‍👩‍👧 🚀🇫🇷 😀"],
    ["mixed 1–4 byte sequences", "a é € 😀"],
  ])("round-trips %s, framed by other values", (_name, s) => {
    const w = new ByteWriter(1);
    w.uint(7);
    w.string(s);
    w.int(-9);
    const r = new ByteReader(w.finish());
    expect(r.uint()).toBe(7);
    expect(r.string()).toBe(s);
    expect(r.int()).toBe(-9);
    expect(r.done).toBe(true);
  });

  it.each([
    // Byte lengths chosen so the length prefix takes 1, 2 and 3 bytes (the writer reserves 5 and slides back).
    ["127 bytes", "x".repeat(127), [0x7f]],
    ["128 bytes", "x".repeat(128), [0x80, 0x01]],
    ["16384 bytes", "y".repeat(16_384), [0x80, 0x80, 0x01]],
    ["150000 bytes of 3-byte €", "€".repeat(50_000), [0xf0, 0x93, 0x09]],
  ])("round-trips a long string (%s) from a 1-byte writer", (_name, s, prefix) => {
    const w = new ByteWriter(1);
    w.string(s);
    w.uint(300);
    const bytes = w.finish();
    const utf8Length = new TextEncoder().encode(s).length;
    expect(bytes.length).toBe(prefix.length + utf8Length + 2);
    expect([...bytes.subarray(0, prefix.length)]).toEqual(prefix);
    const r = new ByteReader(bytes);
    expect(r.string()).toBe(s);
    expect(r.uint()).toBe(300);
    expect(r.done).toBe(true);
  });

  it("keeps earlier contents intact across many buffer growths", () => {
    const w = new ByteWriter(2);
    const parts = Array.from({ length: 200 }, (_, i) => `${i}:${"é😀".repeat(i)}`);
    for (const [i, p] of parts.entries()) {
      w.uint(i * 1_000_003);
      w.string(p);
    }
    const r = new ByteReader(w.finish());
    for (const [i, p] of parts.entries()) {
      expect(r.uint()).toBe(i * 1_000_003);
      expect(r.string()).toBe(p);
    }
    expect(r.done).toBe(true);
  });

  it("grows from a zero-byte initial buffer", () => {
    const w = new ByteWriter(0);
    w.uint(MAX);
    w.string("é");
    const r = new ByteReader(w.finish());
    expect(r.uint()).toBe(MAX);
    expect(r.string()).toBe("é");
  });

  it("refuses bytes that are not UTF-8", () => {
    expect(() => reader([0x02, 0xc3, 0x28]).string()).toThrow();
  });
});

describe("ByteWriter: length and finish", () => {
  it("reports the bytes written and finishes with a view of exactly those", () => {
    const w = new ByteWriter(4);
    expect(w.length).toBe(0);
    w.u8(0xab);
    w.uint(128);
    w.string("hé");
    expect(w.length).toBe(1 + 2 + 1 + 3);
    const first = w.finish();
    expect([...first]).toEqual([0xab, 0x80, 0x01, 0x03, 0x68, 0xc3, 0xa9]);
    w.u8(1);
    expect(first.length).toBe(7); // the view keeps its length...
  });

  it("reset starts over in the same buffer: an earlier finish() view then shows the new bytes", () => {
    const w = new ByteWriter(16);
    w.u8(1);
    w.u8(2);
    const first = w.finish();
    w.reset();
    expect(w.length).toBe(0);
    w.u8(9);
    expect([...w.finish()]).toEqual([9]);
    expect([...first]).toEqual([9, 2]); // ...but not its contents: callers finish with the bytes before reusing
  });
});

describe("ByteWriter: raw bytes; ByteReader: positions and skips", () => {
  it("copies raw bytes, starts a reader anywhere, and skips bytes and varints", () => {
    const w = new ByteWriter(1);
    w.raw(new Uint8Array([1, 2, 3]));
    for (const v of [0, 127, 128, 2 ** 40]) w.uint(v);
    w.u8(42);
    const bytes = w.finish();
    const r = new ByteReader(bytes, 1);
    r.skip(2);
    r.skipVarints(4);
    expect(r.u8()).toBe(42);
    expect(new ByteReader(bytes, 3).uint()).toBe(0);
    expect(() => new ByteReader(bytes, 3).skipVarints(6)).toThrow("snapshot truncated");
    expect(() => new ByteReader(bytes).skip(bytes.length + 1)).toThrow("snapshot truncated");
  });

  it("skips exactly the varints uint reads, and refuses the same ones", () => {
    const cases: number[][] = [
      [0x00],
      [0x7f],
      [0x80, 0x01],
      [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], // 2^53 − 1
      [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10], // 2^53
      [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
      new Array<number>(10).fill(0x80),
      [0x80, 0x80],
    ];
    // Each also with room after it: skipVarints steps over varints with bounds checks near the end of what is
    // there, without them when there is room for the longest.
    for (const bytes of [...cases, ...cases.map((c) => [...c, ...new Array<number>(8).fill(0)])]) {
      const viaUint = (() => {
        const r = new ByteReader(new Uint8Array(bytes));
        try {
          r.uint();
          return r.position;
        } catch (err) {
          return (err as Error).message;
        }
      })();
      const viaSkip = (() => {
        const r = new ByteReader(new Uint8Array(bytes));
        try {
          r.skipVarints(1);
          return r.position;
        } catch (err) {
          return (err as Error).message;
        }
      })();
      expect(viaSkip, JSON.stringify(bytes)).toBe(viaUint);
    }
  });
});

describe("ByteReader: refusals and the done flag", () => {
  it("is done only once every byte is consumed", () => {
    expect(reader([]).done).toBe(true);
    const r = reader([0x05, 0x80, 0x01, 0x01, 0x41]);
    expect(r.done).toBe(false);
    expect(r.u8()).toBe(5);
    expect(r.done).toBe(false);
    expect(r.uint()).toBe(128);
    expect(r.done).toBe(false);
    expect(r.string()).toBe("A");
    expect(r.done).toBe(true);
  });

  it.each([
    ["u8 of an empty buffer", [], (r: ByteReader) => r.u8()],
    ["uint of an empty buffer", [], (r: ByteReader) => r.uint()],
    ["uint cut after a continuation byte", [0x80], (r: ByteReader) => r.uint()],
    ["uint of 2^32 cut short", [0x80, 0x80, 0x80, 0x80], (r: ByteReader) => r.uint()],
    ["int cut after a continuation byte", [0xff], (r: ByteReader) => r.int()],
    ["string with no length", [], (r: ByteReader) => r.string()],
    ["string shorter than its length", [0x05, 0x68, 0x65, 0x6c, 0x6c], (r: ByteReader) => r.string()],
    ["multi-byte string cut mid-character", [0x04, 0xf0, 0x9f, 0x98], (r: ByteReader) => r.string()],
  ])("throws 'truncated' for %s", (_name, bytes, read) => {
    expect(() => read(reader(bytes))).toThrow(new RangeError("snapshot truncated"));
  });

  it("throws on a varint longer than any safe integer needs", () => {
    expect(() => reader(new Array<number>(10).fill(0x80)).uint()).toThrow(new RangeError("varint too long"));
    expect(() => reader([...new Array<number>(12).fill(0xff), 0x01]).uint()).toThrow(new RangeError("varint too long"));
  });

  it("throws on a varint above MAX_SAFE_INTEGER", () => {
    // 2^53 = 0x10 << 49: seven empty groups, then 0x10.
    expect(() => reader([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]).uint()).toThrow(
      new RangeError("varint out of range"),
    );
    // 2^56 − 1: eight full groups.
    expect(() => reader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).uint()).toThrow(
      new RangeError("varint out of range"),
    );
    expect(() => reader([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]).int()).toThrow(RangeError);
  });
});

describe("ByteReader over a buffer still filling", () => {
  /** A source that hands out the bytes `step` at a time, recording how far the reader asked for. */
  function trickle(total: number, step: number, stopAt = total) {
    let filled = 0;
    const asked: number[] = [];
    const more = (end: number) => {
      asked.push(end);
      while (filled < end && filled < stopAt) filled = Math.min(filled + step, stopAt);
      return filled;
    };
    return { more, asked };
  }

  it("reads every kind of value across the edges of what has arrived, asking only when it runs out", () => {
    const w = new ByteWriter(1);
    const values = [0, 1, 127, 128, 300, 2 ** 40, Number.MAX_SAFE_INTEGER];
    for (const v of values) w.uint(v);
    w.int(-12345);
    w.string("héllo, a string longer than one step");
    w.string("x".repeat(100));
    w.u8(7);
    w.raw(new Uint8Array([1, 2, 3]));
    w.uint(5);
    const bytes = w.finish();
    for (const step of [1, 2, 3, 7, 1000]) {
      const { more, asked } = trickle(bytes.length, step);
      const r = new ByteReader(bytes, 0, more);
      expect(values.map(() => r.uint())).toEqual(values);
      expect(r.int()).toBe(-12345);
      expect(r.string()).toBe("héllo, a string longer than one step");
      expect(r.string()).toBe("x".repeat(100));
      expect(r.u8()).toBe(7);
      r.skip(3);
      r.skipVarints(1);
      expect(r.done).toBe(true);
      // Each call asked for more than the reader had: the source is not polled per value.
      expect(asked.length).toBeLessThanOrEqual(Math.ceil(bytes.length / step) + 1);
      for (let i = 1; i < asked.length; i++) expect(asked[i]).toBeGreaterThan(asked[i - 1]!);
    }
  });

  it("fails as truncated when the source stops short, and never reads past the buffer", () => {
    const w = new ByteWriter(1);
    w.uint(2 ** 40);
    w.string("abcdef");
    const bytes = w.finish();
    const cut = trickle(bytes.length, 1, 4);
    const r = new ByteReader(bytes, 0, cut.more);
    expect(() => r.uint()).toThrow("snapshot truncated");
    const short = trickle(bytes.length, 100, bytes.length - 2);
    const s = new ByteReader(bytes, 0, short.more);
    expect(s.uint()).toBe(2 ** 40);
    expect(() => s.string()).toThrow("snapshot truncated");
    const full = trickle(bytes.length, 100);
    const past = new ByteReader(bytes, 0, full.more);
    expect(() => past.skip(bytes.length + 1)).toThrow("snapshot truncated");
    expect(full.asked).toEqual([]); // beyond the buffer: refused without waiting for bytes that cannot come
  });
});

describe("tokenEquals", () => {
  it("compares a written token with a string or another token, byte for byte, at every length up to 200", () => {
    const w = new ByteWriter(16);
    const tokens = [
      "a",
      "b",
      "ab",
      "ba",
      "r1",
      "r10",
      "r1 ",
      "~".repeat(127),
      "~".repeat(128),
      "~".repeat(127) + "}",
      "x".repeat(200),
    ];
    const offsets = tokens.map((t) => {
      const at = w.length;
      w.string(t);
      return at;
    });
    const bytes = w.finish();
    tokens.forEach((t, i) => {
      const r = new ByteReader(bytes, offsets[i]);
      expect(r.string()).toBe(t); // what a decode would give
      tokens.forEach((u, j) => {
        expect(tokenEquals(bytes, offsets[i]!, u), `${t} vs "${u}"`).toBe(t === u);
        expect(tokenEquals(bytes, offsets[i]!, offsets[j]!), `${t} vs token ${u}`).toBe(i === j);
      });
    });
  });
});
