// The connection rule: which databases go through the in-process WebSocket→TCP proxy.
import { describe, expect, it } from "vitest";
import { localProxyFromEnv, shouldUseLocalProxy } from "./postgres.ts";
import { parseAddress } from "./pg-ws-proxy.ts";

describe("connection rule", () => {
  it("proxies every host that is not a Neon host, unless overridden", () => {
    expect(shouldUseLocalProxy("127.0.0.1")).toBe(true);
    expect(shouldUseLocalProxy("localhost")).toBe(true);
    expect(shouldUseLocalProxy("db.internal")).toBe(true);
    expect(shouldUseLocalProxy("ep-cool-rain-123456.us-east-2.aws.neon.tech")).toBe(false);
    expect(shouldUseLocalProxy("EP-X.NEON.TECH")).toBe(false);
    // A look-alike that only contains the suffix is not Neon.
    expect(shouldUseLocalProxy("neon.tech.evil.example")).toBe(true);
    expect(shouldUseLocalProxy("127.0.0.1", false)).toBe(false);
    expect(shouldUseLocalProxy("ep-x.neon.tech", true)).toBe(true);
  });

  it("reads PG_VIA_WS_PROXY strictly", () => {
    expect(localProxyFromEnv(undefined)).toBeUndefined();
    expect(localProxyFromEnv("")).toBeUndefined();
    expect(localProxyFromEnv("1")).toBe(true);
    expect(localProxyFromEnv("0")).toBe(false);
    expect(() => localProxyFromEnv("yes")).toThrow('PG_VIA_WS_PROXY must be "0" or "1"');
  });
});

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
