// Which driver mode the functions use for a database: HTTP for Neon, the local WebSocket proxy for any other.
import { describe, expect, it } from "vitest";
import { isNeonHost } from "./postgres.ts";

describe("isNeonHost", () => {
  it("is true only for a host under .neon.tech", () => {
    expect(isNeonHost("ep-cool-rain-123456.us-east-2.aws.neon.tech")).toBe(true);
    expect(isNeonHost("EP-X.NEON.TECH")).toBe(true);
    expect(isNeonHost("127.0.0.1")).toBe(false);
    expect(isNeonHost("localhost")).toBe(false);
    expect(isNeonHost("db.internal")).toBe(false);
    // A look-alike that only contains the suffix is not Neon.
    expect(isNeonHost("neon.tech.evil.example")).toBe(false);
  });
});
