// The proxy's address parsing: what its allow-list compares.
import { describe, expect, it } from "vitest";
import { parseAddress } from "./pg-ws-proxy.ts";

describe("proxy addresses", () => {
  it("parses host:port and [v6]:port into one comparable form", () => {
    expect(parseAddress("127.0.0.1:5432")).toEqual({ host: "127.0.0.1", port: 5432, key: "127.0.0.1:5432" });
    expect(parseAddress("LocalHost:5432")?.key).toBe("localhost:5432");
    expect(parseAddress("[::1]:5432")).toEqual({ host: "::1", port: 5432, key: "[::1]:5432" });
  });

  it("rejects what is not a plain host:port", () => {
    for (const bad of [
      "",
      "5432",
      ":5432",
      "host:",
      "host:0",
      "host:65536",
      "host:54a",
      "a/b:5432",
      "user@host:5432",
    ]) {
      expect(parseAddress(bad), bad).toBeUndefined();
    }
  });
});
