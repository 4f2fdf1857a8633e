import { describe, expect, it } from "vitest";
import { ConfigError } from "../platform/config.ts";
import { readApiConfig } from "./config.ts";

const base = { DATABASE_URL: "postgres://u@db.example/app" };

describe("readApiConfig", () => {
  it("uses the dev mailbox locally when no Resend key is set", () => {
    expect(readApiConfig(base).resend).toBeUndefined();
  });

  it("refuses to run in production without a Resend key: the dev mailbox would hand out sign-in links", () => {
    expect(() => readApiConfig({ ...base, NODE_ENV: "production" })).toThrow(ConfigError);
    expect(() => readApiConfig({ ...base, NODE_ENV: "production", RESEND_API_KEY: "  " })).toThrow(/RESEND_API_KEY/);
    expect(readApiConfig({ ...base, NODE_ENV: "production", RESEND_API_KEY: "re_x" }).resend).toEqual({
      apiKey: "re_x",
      baseUrl: undefined,
    });
  });

  it("secure cookies on https or in production; Upstash REST when its URL is set", () => {
    expect(readApiConfig({ ...base, APP_URL: "https://api.example.com" }).settings.secureCookies).toBe(true);
    expect(readApiConfig(base).settings.secureCookies).toBe(false);
    expect(
      readApiConfig({ ...base, UPSTASH_REDIS_REST_URL: "https://x.upstash.io", UPSTASH_REDIS_REST_TOKEN: "t" }).redis
        .kind,
    ).toBe("upstash");
  });

  it("rejects a short JWT secret and malformed CORS origins", () => {
    expect(() => readApiConfig({ ...base, JWT_SECRET: "short" })).toThrow(/at least 32/);
    expect(() => readApiConfig({ ...base, CORS_ORIGINS: "https://ok.example, not a url" })).toThrow(/CORS_ORIGINS/);
  });
});
