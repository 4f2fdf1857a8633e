// Base64 as ASCII bytes: the same text as Node's encoder for every length and byte, written into a reused buffer.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Base64Writer, base64Length } from "./base64.ts";

const ascii = (bytes: Uint8Array) => Buffer.from(bytes).toString("latin1");

describe("Base64Writer", () => {
  it("matches Buffer#toString('base64') for every length up to 64, padding included", () => {
    const writer = new Base64Writer(64);
    const source = randomBytes(64);
    for (let n = 0; n <= 64; n++) {
      const bytes = source.subarray(0, n);
      const out = writer.encode(bytes);
      expect(out.length, `${n} bytes`).toBe(base64Length(n));
      expect(ascii(out), `${n} bytes`).toBe(bytes.toString("base64"));
    }
  });

  it("encodes every byte value in every position of a group", () => {
    const writer = new Base64Writer(3 * 256);
    for (const shift of [0, 1, 2]) {
      const bytes = Buffer.alloc(3 * 256);
      for (let i = 0; i < 256; i++) bytes[3 * i + shift] = i;
      expect(ascii(writer.encode(bytes))).toBe(bytes.toString("base64"));
    }
  });

  it("reuses its buffer: a later, shorter encoding leaves nothing of the earlier one in its view", () => {
    const writer = new Base64Writer(4096);
    const long = randomBytes(4096);
    const short = randomBytes(5);
    expect(ascii(writer.encode(long))).toBe(long.toString("base64"));
    expect(ascii(writer.encode(short))).toBe(short.toString("base64"));
  });

  it("handles a view into a larger buffer and a chunk of snapshot size", () => {
    const big = randomBytes(4 * 1024 * 1024 + 7);
    const writer = new Base64Writer(4 * 1024 * 1024 + 1);
    const view = big.subarray(6);
    expect(ascii(writer.encode(view))).toBe(view.toString("base64"));
  });

  it("refuses more bytes than it was made for, writing nothing", () => {
    const writer = new Base64Writer(6);
    const out = writer.encode(Buffer.from("abcdef"));
    expect(() => writer.encode(new Uint8Array(7).fill(255))).toThrow("base64: 7 bytes, this writer takes at most 6");
    expect(ascii(out)).toBe("YWJjZGVm"); // the view of the last encoding is untouched
  });
});
