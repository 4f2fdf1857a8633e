import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { keyspace } from "../contract/names.ts";
import { inboxOf, limited, signInEmailSubject, signInIpSubject } from "./admission.ts";
import { Sessions } from "./auth/sessions.ts";

/** Sessions under `secret`, for their keyed digests only: Redis is never asked. */
const signingWith = (secret: string) => new Sessions(new TextEncoder().encode(secret), {} as never, keyspace("p:"));

describe("sign-in limit subjects", () => {
  const sessions = signingWith("s".repeat(32));

  it("counts +tag variants, and Gmail's dotted spellings, as the one inbox they reach", async () => {
    expect(inboxOf("victim+1@example.com")).toBe("victim@example.com");
    expect(inboxOf("victim+a+b@example.com")).toBe("victim@example.com");
    expect(inboxOf("v.i.c.tim+x@gmail.com")).toBe("victim@gmail.com");
    expect(inboxOf("victim@googlemail.com")).toBe("victim@gmail.com");
    expect(inboxOf("first.last@example.com")).toBe("first.last@example.com"); // dots matter elsewhere
    const subject = (email: string) => signInEmailSubject(sessions, email);
    expect(await subject("v.i.c.tim+x@googlemail.com")).toBe(await subject("victim@gmail.com"));
    expect(await subject("first.last@example.com")).not.toBe(await subject("firstlast@example.com"));
  });

  it("counts an inbox by its HMAC under the signing key: no address in a key, none confirmed by hashing", async () => {
    const subject = await signInEmailSubject(sessions, "me+news@example.com");
    expect(subject).toBe(createHmac("sha256", "s".repeat(32)).update("sign-in-email\0me@example.com").digest("hex"));
    // Not the plain hash a reader of the key names could compute from a list of addresses.
    expect(subject).not.toBe(createHash("sha256").update("me@example.com").digest("hex"));
    expect(await signInEmailSubject(signingWith("t".repeat(32)), "me@example.com")).not.toBe(subject);
    const key = keyspace("p:").rateLimitKey("sign-in-email", subject);
    expect(key).toBe(`p:api:{${subject}}:rate:sign-in-email`);
    expect(key).not.toMatch(/me|example/);
  });

  it("counts IPv4 per address and IPv6 per /64", () => {
    expect(signInIpSubject("203.0.113.7")).toBe("203.0.113.7");
    expect(signInIpSubject("::ffff:203.0.113.7")).toBe("::ffff:203.0.113.7");
    expect(signInIpSubject("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:0db8:0001:0002::ffff")).toBe("2001:db8:1:2::/64");
    expect(signInIpSubject("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(signInIpSubject("::1")).toBe("0:0:0:0::/64");
  });
});

describe("the answer over a rate limit", () => {
  it("names the limit, what it counts and its window, and the wait Retry-After gives", () => {
    const over = limited("trade", { limit: 20, windowMs: 1000 });
    expect([over.code, over.status, over.headers]).toEqual(["RATE_LIMITED", 429, { "Retry-After": "1" }]);
    expect(over.message).toBe("Too many requests: at most 20 trade requests per user per second; try again in 1 s.");
    expect(limited("sign-in-email", { limit: 5, windowMs: 15 * 60_000 }).message).toBe(
      "Too many requests: at most 5 sign-in emails per address per 15 minutes; try again in 900 s.",
    );
    expect(limited("candles", { limit: 10, windowMs: 2 * 3_600_000 }).message).toContain("per client IP per 2 hours;");
    expect(limited("history", { limit: 10, windowMs: 1500 }).message).toContain(
      "per user per 1500 ms; try again in 2 s",
    );
    // What is left of the window, rounded up to whole seconds, at least one.
    const minute = { limit: 60, windowMs: 60_000 };
    expect(limited("stream-ticket", minute, 12_300).headers).toEqual({ "Retry-After": "13" });
    expect(limited("stream-ticket", minute, 12_300).message).toContain("try again in 13 s.");
    expect(limited("stream-ticket", minute, 1).headers).toEqual({ "Retry-After": "1" });
  });
});
