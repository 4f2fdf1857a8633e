// Which driver mode the functions use for a database: HTTP for Neon, the local WebSocket proxy for any other
// that does not ask for TLS.
import { describe, expect, it } from "vitest";
import { createLogger } from "../platform/log.ts";
import { connectFunctionsPostgres, isNeonHost } from "./postgres.ts";

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

describe("connectFunctionsPostgres: a database that asks for TLS is not sent through the local proxy", () => {
  it("refuses sslmode=require on a non-Neon host, naming DATABASE_URL, what it asks and what to do", async () => {
    for (const sslmode of ["require", "verify-ca", "verify-full"]) {
      await expect(
        connectFunctionsPostgres(`postgres://u:p@db.example.com:5432/app?sslmode=${sslmode}`, createLogger("test")),
      ).rejects.toThrow(`DATABASE_URL: the API reaches a Postgres that is not on Neon (db.example.com)`);
    }
    await expect(
      connectFunctionsPostgres("postgres://u:p@db.example.com/app?sslmode=require", createLogger("test")),
    ).rejects.toThrow("sslmode=require asks for TLS; use a Neon host");
  });
});
