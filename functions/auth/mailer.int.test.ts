// Both mailers against real servers: the real `resend` client talking to the local recorder (what it sends, how
// API errors surface), and the dev mailbox on real Redis under a key unique to this run.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { createIoredisApiRedis } from "../redis/ioredis-api-redis.ts";
import { startResendRecorder, type ResendRecorder } from "../testing/resend-recorder.ts";
import { createDevMailbox, createResendMailer, EmailUnavailable, signInEmail } from "./mailer.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";

const API_KEY = "re_test_0123456789abcdef";
const FROM = "paper-broker <login@paper-broker.test>";

function captureLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("mailer-test", {
    level: "debug",
    sink: (line) => lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  return { log, events: (name: string) => lines.filter((l) => l.event === name) };
}

describe("createResendMailer", () => {
  let recorder: ResendRecorder;
  beforeAll(async () => {
    recorder = await startResendRecorder();
  });
  afterAll(() => recorder.close());

  const email = () =>
    signInEmail({ to: "ada@example.com", link: `https://app.test/verify?token=${randomUUID()}`, expiresInMinutes: 15 });

  it("sends through the real client: sender, recipient, subject, both bodies, the key as Bearer", async () => {
    const { log, events } = captureLog();
    const mail = email();
    await createResendMailer({ apiKey: API_KEY, baseUrl: recorder.baseUrl, from: FROM, log }).send(mail);
    const recorded = recorder.sent.at(-1);
    expect(recorded?.apiKey).toBe(API_KEY);
    expect(recorded?.body).toMatchObject({ from: FROM, to: "ada@example.com", subject: "Your sign-in link" });
    expect(recorded?.body.text).toContain(mail.link);
    expect(recorded?.body.html).toContain(mail.link);
    const sentEvents = events("email_sent");
    expect(sentEvents).toHaveLength(1);
    expect(sentEvents[0]).toMatchObject({ provider: "resend" });
    expect(typeof sentEvents[0]?.id).toBe("string");
  });

  /** The mailer's outcome: undefined once sent, else what it threw. */
  const outcome = (mailer: ReturnType<typeof createResendMailer>) =>
    mailer.send(email()).then(
      () => undefined,
      (err: unknown) => err as Error,
    );

  it("turns a malformed request's error into a thrown error that names it and never shows the key", async () => {
    const before = recorder.sent.length;
    recorder.failNext(422, {
      statusCode: 422,
      name: "missing_required_field",
      message: `Bad request for key ${API_KEY}`,
    });
    const mailer = createResendMailer({
      apiKey: API_KEY,
      baseUrl: recorder.baseUrl,
      from: FROM,
      log: captureLog().log,
    });
    const error = await outcome(mailer);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(EmailUnavailable); // a bug: 500
    expect(error?.message).toMatch(/missing_required_field \(422\): Bad request/);
    expect(error?.message).not.toContain(API_KEY);
    expect(recorder.sent).toHaveLength(before);
  });

  it("an address Resend refuses is logged as a warning and not thrown: the asker hears the same as for any", async () => {
    const { log, events } = captureLog();
    const mailer = createResendMailer({ apiKey: API_KEY, baseUrl: recorder.baseUrl, from: FROM, log });
    const message = `Invalid \`to\` field. The email address needs to follow the \`email@example.com\` format (${API_KEY}).`;
    recorder.failNext(422, { statusCode: 422, name: "validation_error", message });
    expect(await outcome(mailer)).toBeUndefined();
    const refused = events("email_address_refused");
    expect(refused.map((e) => [e.level, e.provider])).toEqual([["warn", "resend"]]);
    expect(refused[0]?.error).toMatch(/^validation_error \(422\): Invalid `to` field/);
    expect(JSON.stringify(events("email_address_refused"))).not.toContain(API_KEY);
    expect(events("email_sent")).toEqual([]);
  });

  it("Resend failing, or over its limits, throws EmailUnavailable (503)", async () => {
    const mailer = createResendMailer({
      apiKey: API_KEY,
      baseUrl: recorder.baseUrl,
      from: FROM,
      log: captureLog().log,
    });
    const answers: [number, unknown, RegExp][] = [
      [
        500,
        { statusCode: 500, name: "application_error", message: "An unexpected error occurred." },
        /application_error \(500\)/,
      ],
      [
        503,
        { statusCode: 503, name: "service_unavailable", message: "API is temporarily unavailable" },
        /service_unavailable \(503\)/,
      ],
      [502, "<html>Bad Gateway</html>", /application_error \(502\)/],
      [
        429,
        { statusCode: 429, name: "rate_limit_exceeded", message: "Too many requests." },
        /rate_limit_exceeded \(429\)/,
      ],
      [429, { statusCode: 429, name: "daily_quota_exceeded", message: "Daily quota." }, /daily_quota_exceeded \(429\)/],
    ];
    for (const [status, body, named] of answers) {
      recorder.failNext(status, body);
      const error = await outcome(mailer);
      expect(error, String(status)).toBeInstanceOf(EmailUnavailable);
      expect(error?.message).toMatch(named);
    }
  });

  it("our key or sender refused throws EmailUnavailable, and an error log names the setting to fix", async () => {
    const badKey = "sk_live_not_resend";
    const { log, events } = captureLog();
    // The recorder refuses a key not shaped re_… as Resend does: 403 invalid_api_key.
    const wrongKey = await outcome(createResendMailer({ apiKey: badKey, baseUrl: recorder.baseUrl, from: FROM, log }));
    expect(wrongKey).toBeInstanceOf(EmailUnavailable);
    expect(wrongKey?.message).toMatch(/RESEND_API_KEY.*invalid_api_key \(403\)/);
    expect(wrongKey?.message).not.toContain(badKey);

    const mailer = createResendMailer({ apiKey: API_KEY, baseUrl: recorder.baseUrl, from: FROM, log });
    recorder.failNext(401, {
      statusCode: 401,
      name: "missing_api_key",
      message: "Missing API key in the authorization header.",
    });
    expect(await outcome(mailer)).toBeInstanceOf(EmailUnavailable);
    const testingSender = "You can only send testing emails to your own email address (owner@example.com).";
    recorder.failNext(403, { statusCode: 403, name: "validation_error", message: testingSender });
    expect((await outcome(mailer))?.message).toMatch(/^Resend refused EMAIL_FROM/);
    recorder.failNext(422, { statusCode: 422, name: "validation_error", message: "Invalid `from` field." });
    expect(await outcome(mailer)).toBeInstanceOf(EmailUnavailable);

    const refused = events("email_setting_refused");
    expect(refused.map((e) => [e.level, e.setting])).toEqual([
      ["error", "RESEND_API_KEY"],
      ["error", "RESEND_API_KEY"],
      ["error", "EMAIL_FROM"],
      ["error", "EMAIL_FROM"],
    ]);
    expect(JSON.stringify(refused)).not.toContain(badKey);
  });

  it("Resend unreachable, or silent past the time limit, throws EmailUnavailable; an empty key is refused", async () => {
    const other = await startResendRecorder();
    await other.close();
    const unreachable = createResendMailer({
      apiKey: API_KEY,
      baseUrl: other.baseUrl,
      from: FROM,
      log: captureLog().log,
    });
    const error = await outcome(unreachable);
    expect(error).toBeInstanceOf(EmailUnavailable);
    expect(error?.message).toMatch(/application_error \(no status\)/);

    const mailer = createResendMailer({
      apiKey: API_KEY,
      baseUrl: recorder.baseUrl,
      from: FROM,
      log: captureLog().log,
      timeoutMs: 200,
    });
    recorder.stallNext();
    const started = Date.now();
    const stalled = await outcome(mailer);
    expect(stalled).toBeInstanceOf(EmailUnavailable);
    expect(stalled?.message).toMatch(/no answer within 200 ms/);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(() => createResendMailer({ apiKey: "", from: FROM, log: captureLog().log })).toThrow(/empty/);
  });
});

describe("createDevMailbox", () => {
  const redis = new Redis(TEST_REDIS_URL);
  const apiRedis = createIoredisApiRedis(TEST_REDIS_URL);
  const key = `test:${randomUUID()}:dev-mailbox`;
  afterAll(async () => {
    await redis.del(key);
    redis.disconnect();
    await apiRedis.close();
  });

  it("keeps the newest emails first, trims to `keep`, and logs each link", async () => {
    const { log, events } = captureLog();
    const mailbox = createDevMailbox({ redis: apiRedis, key, log, keep: 3 });
    const links = Array.from({ length: 5 }, (_, i) => `http://localhost:3000/api/v1/auth/verify?token=t${i}`);
    for (const [i, link] of links.entries())
      await mailbox.send(signInEmail({ to: `u${i}@example.com`, link, expiresInMinutes: 15 }));

    expect(await redis.llen(key)).toBe(3);
    const listed = await mailbox.list(10);
    expect(listed.map((m) => m.to)).toEqual(["u4@example.com", "u3@example.com", "u2@example.com"]);
    expect(listed[0]).toMatchObject({ subject: "Your sign-in link", link: links[4] });
    expect(Date.parse(listed[0]?.sentAt ?? "")).not.toBeNaN();
    expect(listed[0]?.text).toContain(links[4]);
    expect(listed[0]?.html).toContain(links[4]);
    expect((await mailbox.list(2)).map((m) => m.to)).toEqual(["u4@example.com", "u3@example.com"]);
    expect(await mailbox.list(0)).toEqual([]);
    expect(events("dev_email").map((e) => e.link)).toEqual(links);
  });
});
