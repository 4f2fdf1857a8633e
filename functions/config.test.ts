import { describe, expect, it } from "vitest";
import { ConfigError } from "../platform/config.ts";
import { nodeServerOptions, readApiConfig, readHttpTimeouts } from "./config.ts";

const base = { DATABASE_URL: "postgres://u@db.example/app" };

describe("readApiConfig", () => {
  it("refuses a KEY_PREFIX outside the rule every process applies (platform/config.ts keyPrefix)", () => {
    expect(readApiConfig({ ...base, KEY_PREFIX: "staging:" }).prefix).toBe("staging:");
    expect(() => readApiConfig({ ...base, KEY_PREFIX: "paper broker:" })).toThrow(
      new ConfigError('KEY_PREFIX must be at most 64 printable ASCII characters without spaces, got "paper broker:"'),
    );
    expect(() => readApiConfig({ ...base, KEY_PREFIX: "x".repeat(65) })).toThrow(/^KEY_PREFIX must be at most 64/);
  });

  it("uses the dev mailbox locally when no Resend key is set", () => {
    expect(readApiConfig(base).resend).toBeUndefined();
  });

  it("refuses to run in production without a Resend key: the dev mailbox would hand out sign-in links", () => {
    expect(() => readApiConfig({ ...base, NODE_ENV: "production" })).toThrow(ConfigError);
    expect(() => readApiConfig({ ...base, NODE_ENV: "production", RESEND_API_KEY: "  " })).toThrow(/RESEND_API_KEY/);
    const production = { ...base, NODE_ENV: "production", EMAIL_FROM: "Paper Broker <login@example.com>" };
    expect(readApiConfig({ ...production, RESEND_API_KEY: "re_x" }).resend).toEqual({
      apiKey: "re_x",
      baseUrl: undefined,
    });
  });

  it("refuses Resend's testing sender in production: Resend sends from it only to the account's own address", () => {
    const production = { ...base, NODE_ENV: "production", RESEND_API_KEY: "re_x" };
    expect(() => readApiConfig(production)).toThrow(
      new ConfigError(
        "EMAIL_FROM: expected a sender on a domain verified in Resend when NODE_ENV=production, received " +
          '"Paper Broker <onboarding@resend.dev>" (the default): Resend sends from resend.dev only to the ' +
          "Resend account's own address, so no one else could sign in",
      ),
    );
    for (const from of ["onboarding@resend.dev", "Me <Onboarding@RESEND.dev>", "x <a@mail.resend.dev.> "])
      expect(() => readApiConfig({ ...production, EMAIL_FROM: from }), from).toThrow(/^EMAIL_FROM: .*received "/);
    for (const from of ["login@example.com", "Paper Broker <login@notresend.dev>", "resend.dev <a@example.com>"])
      expect(readApiConfig({ ...production, EMAIL_FROM: from }).emailFrom, from).toBe(from.trim());
    // Locally the default stays: with a key it reaches the key's own account, enough to try a real send.
    expect(readApiConfig({ ...base, RESEND_API_KEY: "re_x" }).emailFrom).toBe("Paper Broker <onboarding@resend.dev>");
    expect(readApiConfig(base).emailFrom).toBe("Paper Broker <onboarding@resend.dev>");
  });

  it("refuses to run without a Resend key unless APP_URL is a loopback name: a proxy here opens the mailbox", () => {
    for (const appUrl of ["http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:3000", "http://LOCALHOST"])
      expect(readApiConfig({ ...base, APP_URL: appUrl }).resend, appUrl).toBeUndefined();
    expect(() => readApiConfig({ ...base, APP_URL: "https://x.example.com" })).toThrow(
      new ConfigError(
        "RESEND_API_KEY is required unless APP_URL's host is a loopback name (localhost, 127.0.0.1, [::1]): " +
          "without it sign-in links go to the dev mailbox, for this machine only; " +
          'got APP_URL "https://x.example.com" and no key',
      ),
    );
    for (const appUrl of ["http://192.168.1.5:3000", "http://localhost.example.com", "http://0.0.0.0:3000"])
      expect(() => readApiConfig({ ...base, APP_URL: appUrl }), appUrl).toThrow(/RESEND_API_KEY.*APP_URL/);
    expect(readApiConfig({ ...base, APP_URL: "https://x.example.com", RESEND_API_KEY: "re_x" }).resend).toBeDefined();
  });

  it("secure cookies on https or in production; Upstash REST when its URL is set", () => {
    expect(
      readApiConfig({ ...base, APP_URL: "https://api.example.com", RESEND_API_KEY: "re_x" }).settings.secureCookies,
    ).toBe(true);
    expect(readApiConfig(base).settings.secureCookies).toBe(false);
    const upper = { ...base, APP_URL: "HTTPS://API.example.com", RESEND_API_KEY: "re_x" };
    expect(readApiConfig(upper).settings.secureCookies).toBe(true);
    expect(
      readApiConfig({ ...base, UPSTASH_REDIS_REST_URL: "https://x.upstash.io", UPSTASH_REDIS_REST_TOKEN: "t" }).redis
        .kind,
    ).toBe("upstash");
  });

  it("Upstash polling pauses: 2 and 20 ms by default, read from the environment, the longest not below the first", () => {
    const upstash = { ...base, UPSTASH_REDIS_REST_URL: "https://x.upstash.io", UPSTASH_REDIS_REST_TOKEN: "t" };
    expect(readApiConfig(upstash).redis).toMatchObject({ pollMinMs: 2, pollMaxMs: 20 });
    expect(readApiConfig({ ...upstash, UPSTASH_POLL_MIN_MS: "5", UPSTASH_POLL_MAX_MS: "50" }).redis).toMatchObject({
      pollMinMs: 5,
      pollMaxMs: 50,
    });
    expect(() => readApiConfig({ ...upstash, UPSTASH_POLL_MIN_MS: "30" })).toThrow(
      "UPSTASH_POLL_MAX_MS: expected at least UPSTASH_POLL_MIN_MS (30), received 20",
    );
    expect(() => readApiConfig({ ...upstash, UPSTASH_POLL_MIN_MS: "0" })).toThrow(/UPSTASH_POLL_MIN_MS/);
  });

  it("refuses a REDIS_URL without TLS for an Upstash host, which takes TLS only", () => {
    const plain = { ...base, REDIS_URL: "redis://default:pw@eu1-fine-cat-1234.upstash.io:6379" };
    expect(() => readApiConfig(plain)).toThrow(
      /^REDIS_URL names an Upstash host, which takes TLS only: use rediss:\/\//,
    );
    expect(readApiConfig({ ...plain, REDIS_URL: plain.REDIS_URL.replace("redis:", "rediss:") }).redis).toMatchObject({
      kind: "tcp",
    });
  });

  it("rejects a short JWT secret and malformed CORS origins", () => {
    expect(() => readApiConfig({ ...base, JWT_SECRET: "short" })).toThrow(
      new ConfigError("JWT_SECRET: expected at least 32 characters, received 5"),
    );
    expect(() => readApiConfig({ ...base, CORS_ORIGINS: "https://ok.example, not a url" })).toThrow(/CORS_ORIGINS/);
  });

  it("refuses a CORS origin in a form no browser sends in Origin, which would never match, saying the form meant", () => {
    const form = "CORS_ORIGINS entries must be origins as browsers send them (host in lower case, no default port)";
    for (const [entry, meant] of [
      ["https://App.Example.com", "https://app.example.com"],
      ["https://app.example.com:443", "https://app.example.com"],
      ["http://localhost:80", "http://localhost"],
      ["https://bücher.example", "https://xn--bcher-kva.example"],
    ]) {
      expect(() => readApiConfig({ ...base, CORS_ORIGINS: `https://ok.example,${entry}` })).toThrow(
        new ConfigError(`${form}, got "${entry}" (did you mean ${meant}?)`),
      );
    }
    expect(
      readApiConfig({ ...base, CORS_ORIGINS: "https://ok.example, http://[::1]:5173" }).settings.corsOrigins,
    ).toEqual(["https://ok.example", "http://[::1]:5173"]);
  });
});

describe("read rate limits", () => {
  it("history per user per second; verify per IP per 15 minutes, by default the sign-in budget", () => {
    const { settings } = readApiConfig(base);
    expect(settings.historyRate).toEqual({ limit: 10, windowMs: 1000 });
    expect(settings.verifyPerIp).toEqual({ limit: 30, windowMs: 15 * 60_000 });
    expect(readApiConfig({ ...base, SIGN_IN_LIMIT_PER_IP: "50" }).settings.verifyPerIp.limit).toBe(50);
    const set = readApiConfig({ ...base, HISTORY_RATE_LIMIT_PER_SEC: "3", VERIFY_LIMIT_PER_IP: "7" }).settings;
    expect([set.historyRate.limit, set.verifyPerIp.limit]).toEqual([3, 7]);
    expect(() => readApiConfig({ ...base, HISTORY_RATE_LIMIT_PER_SEC: "0" })).toThrow(/HISTORY_RATE_LIMIT_PER_SEC/);
  });

  it("sign-in emails of the whole deployment per 24 hours, 1,000 by default", () => {
    expect(readApiConfig(base).settings.signInPerDeployment).toEqual({ limit: 1000, windowMs: 24 * 3_600_000 });
    expect(readApiConfig({ ...base, SIGN_IN_EMAILS_PER_DAY: "25000" }).settings.signInPerDeployment.limit).toBe(25000);
    expect(() => readApiConfig({ ...base, SIGN_IN_EMAILS_PER_DAY: "0" })).toThrow(
      'SIGN_IN_EMAILS_PER_DAY must be a whole number from 1 to 100000000, got "0"',
    );
  });

  it("candles per client IP per second", () => {
    expect(readApiConfig(base).settings.candlesRate).toEqual({ limit: 10, windowMs: 1000 });
    expect(readApiConfig({ ...base, CANDLES_RATE_LIMIT_PER_SEC: "4" }).settings.candlesRate.limit).toBe(4);
    expect(() => readApiConfig({ ...base, CANDLES_RATE_LIMIT_PER_SEC: "x" })).toThrow(/CANDLES_RATE_LIMIT_PER_SEC/);
  });
});

describe("the live stream", () => {
  it("hands out STREAM_URL, by default the local stream on STREAM_PORT; a ws: or wss: URL only", () => {
    expect(readApiConfig(base).settings.streamUrl).toBe("ws://localhost:3001/api/v1/stream");
    expect(readApiConfig({ ...base, STREAM_PORT: "4001" }).settings.streamUrl).toBe(
      "ws://localhost:4001/api/v1/stream",
    );
    expect(readApiConfig({ ...base, STREAM_URL: "wss://stream.example.com/api/v1/stream" }).settings.streamUrl).toBe(
      "wss://stream.example.com/api/v1/stream",
    );
    expect(() => readApiConfig({ ...base, STREAM_URL: "https://stream.example.com" })).toThrow(
      'STREAM_URL must use ws: or wss:, got "https://stream.example.com"',
    );
    expect(() => readApiConfig({ ...base, STREAM_PORT: "0" })).toThrow(/STREAM_PORT/);
  });

  it("takes STREAM_PORT 0 (a free port, as the stream does) only with a STREAM_URL to hand out", () => {
    expect(() => readApiConfig({ ...base, STREAM_PORT: "0" })).toThrow(
      new ConfigError(
        'STREAM_PORT must be from 1 to 65535 unless STREAM_URL is set (0, a free port, leaves the API no stream address to hand out), got "0"',
      ),
    );
    const given = { ...base, STREAM_PORT: "0", STREAM_URL: "ws://127.0.0.1:4101/api/v1/stream" };
    expect(readApiConfig(given).settings.streamUrl).toBe("ws://127.0.0.1:4101/api/v1/stream");
    expect(() => readApiConfig({ ...base, STREAM_PORT: "65536" })).toThrow(
      'STREAM_PORT must be a whole number from 0 to 65535, got "65536"',
    );
  });

  it("tickets per user per minute: 60 by default", () => {
    expect(readApiConfig(base).settings.streamTicketRate).toEqual({ limit: 60, windowMs: 60_000 });
    expect(readApiConfig({ ...base, STREAM_TICKET_LIMIT_PER_MIN: "5" }).settings.streamTicketRate.limit).toBe(5);
  });
});

describe("readHttpTimeouts", () => {
  it("defaults that fit an API: seconds, not Node's 300 s for a request", () => {
    expect(readHttpTimeouts({})).toEqual({
      headersTimeoutMs: 5_000,
      requestTimeoutMs: 10_000,
      keepAliveTimeoutMs: 5_000,
    });
    expect(nodeServerOptions(readHttpTimeouts({})).serverOptions).toEqual({
      headersTimeout: 5_000,
      requestTimeout: 10_000,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 500,
    });
  });

  it("reads each from the environment and refuses headers allowed longer than the whole request", () => {
    expect(readHttpTimeouts({ HTTP_REQUEST_TIMEOUT_MS: "2000" })).toMatchObject({
      headersTimeoutMs: 2_000,
      requestTimeoutMs: 2_000,
    });
    expect(
      readHttpTimeouts({
        HTTP_REQUEST_TIMEOUT_MS: "1000",
        HTTP_HEADERS_TIMEOUT_MS: "500",
        HTTP_KEEP_ALIVE_TIMEOUT_MS: "65000",
      }),
    ).toEqual({ headersTimeoutMs: 500, requestTimeoutMs: 1_000, keepAliveTimeoutMs: 65_000 });
    expect(() => readHttpTimeouts({ HTTP_REQUEST_TIMEOUT_MS: "1000", HTTP_HEADERS_TIMEOUT_MS: "2000" })).toThrow(
      new ConfigError("HTTP_HEADERS_TIMEOUT_MS: expected at most HTTP_REQUEST_TIMEOUT_MS (1000), received 2000"),
    );
    expect(() => readHttpTimeouts({ HTTP_HEADERS_TIMEOUT_MS: "20000" })).toThrow(
      new ConfigError(
        "HTTP_HEADERS_TIMEOUT_MS: expected at most HTTP_REQUEST_TIMEOUT_MS (10000, its default), received 20000",
      ),
    );
    expect(() => readHttpTimeouts({ HTTP_REQUEST_TIMEOUT_MS: "soon" })).toThrow(/HTTP_REQUEST_TIMEOUT_MS/);
  });
});
