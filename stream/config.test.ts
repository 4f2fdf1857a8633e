// Which browser origins may open a stream socket, against the API's rule for the same environment: a page that got
// its ticket from the API (POST /api/v1/stream/ticket passed the API's Origin check) can open the socket.
import { describe, expect, it } from "vitest";
import { readApiConfig } from "../functions/config.ts";
import { ConfigError, loopbackOrigins } from "../platform/config.ts";
import { readStreamConfig } from "./config.ts";

const base = { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/paper" };

/** The origins functions/app.ts admits for `env`: APP_URL's, CORS_ORIGINS, the loopback ones with the dev mailbox. */
function apiOrigins(env: Record<string, string>): string[] {
  const { settings, resend } = readApiConfig(env);
  const devMailbox = resend === undefined;
  return [
    ...new Set([
      new URL(settings.appUrl).origin,
      ...settings.corsOrigins,
      ...(devMailbox ? loopbackOrigins(settings.appUrl) : []),
    ]),
  ].sort();
}

describe("the stream's allowed origins", () => {
  it("in development (no RESEND_API_KEY, APP_URL on localhost), also APP_URL's port on 127.0.0.1 and [::1], as the API", () => {
    const env = { ...base, APP_URL: "http://localhost:3000", CORS_ORIGINS: "http://localhost:5173" };
    const origins = [...readStreamConfig(env).allowedOrigins].sort();
    expect(origins).toEqual(
      ["http://localhost:3000", "http://127.0.0.1:3000", "http://[::1]:3000", "http://localhost:5173"].sort(),
    );
    expect(origins).toEqual(apiOrigins(env));
    // By default APP_URL is http://localhost:$PORT.
    expect(readStreamConfig({ ...base, PORT: "4000" }).allowedOrigins.has("http://127.0.0.1:4000")).toBe(true);
  });

  it("with an email provider, or deployed, only APP_URL's origin and CORS_ORIGINS, as the API", () => {
    const withKey = { ...base, APP_URL: "http://localhost:3000", RESEND_API_KEY: "re_key" };
    expect([...readStreamConfig(withKey).allowedOrigins]).toEqual(["http://localhost:3000"]);
    expect([...readStreamConfig(withKey).allowedOrigins]).toEqual(apiOrigins(withKey));
    const deployed = {
      ...base,
      APP_URL: "https://api.example.com",
      CORS_ORIGINS: "https://app.example.com",
      RESEND_API_KEY: "re_key",
      EMAIL_FROM: "Paper Broker <login@example.com>", // the API refuses Resend's testing sender in production
      NODE_ENV: "production",
    };
    expect([...readStreamConfig(deployed).allowedOrigins].sort()).toEqual(apiOrigins(deployed));
    // The stream deployed gets neither RESEND_API_KEY nor a loopback APP_URL: nothing more than those either.
    const streamEnv: Record<string, string> = { ...deployed };
    delete streamEnv.RESEND_API_KEY;
    expect([...readStreamConfig(streamEnv).allowedOrigins].sort()).toEqual(apiOrigins(deployed));
    // Nor on a loopback APP_URL under NODE_ENV=production, where the API would not start without a key.
    const production = { ...base, APP_URL: "http://localhost:3000", NODE_ENV: "production" };
    expect([...readStreamConfig(production).allowedOrigins]).toEqual(["http://localhost:3000"]);
  });
});

describe("CORS_ORIGINS", () => {
  it("refuses an entry in a form no browser sends in Origin, with the same error as the API", () => {
    const env = { ...base, CORS_ORIGINS: "https://App.Example.com:443" };
    const error = new ConfigError(
      'CORS_ORIGINS entries must be origins as browsers send them (host in lower case, no default port), got "https://App.Example.com:443" (did you mean https://app.example.com?)',
    );
    expect(() => readStreamConfig(env)).toThrow(error);
    expect(() => readApiConfig(env)).toThrow(error);
  });
});
