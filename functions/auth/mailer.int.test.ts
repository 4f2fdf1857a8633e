// Both mailers against real servers: the real `resend` client talking to the local recorder (what it sends, how
// API errors surface), and the dev mailbox on real Redis under a key unique to this run.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { createIoredisApiRedis } from "../redis/ioredis-api-redis.ts";
import { startResendRecorder, type ResendRecorder } from "../testing/resend-recorder.ts";
import { createDevMailbox, createResendMailer, signInEmail } from "./mailer.ts";
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

  it("turns an API error into a thrown error that names it and never shows the key", async () => {
    const before = recorder.sent.length;
    recorder.failNext(422, { statusCode: 422, name: "validation_error", message: `Bad request for key ${API_KEY}` });
    const mailer = createResendMailer({
      apiKey: API_KEY,
      baseUrl: recorder.baseUrl,
      from: FROM,
      log: captureLog().log,
    });
    const error = await mailer.send(email()).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/validation_error \(422\): Bad request/);
    expect((error as Error).message).not.toContain(API_KEY);
    expect(recorder.sent).toHaveLength(before);
  });

  it("rejects a malformed key the way Resend does, without echoing it", async () => {
    const badKey = "sk_live_not_resend";
    const mailer = createResendMailer({ apiKey: badKey, baseUrl: recorder.baseUrl, from: FROM, log: captureLog().log });
    const error = await mailer.send(email()).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((error as Error).message).toMatch(/invalid_api_key \(403\)/);
    expect((error as Error).message).not.toContain(badKey);
  });

  it("throws when Resend cannot be reached, and refuses an empty key up front", async () => {
    const other = await startResendRecorder();
    await other.close();
    const mailer = createResendMailer({ apiKey: API_KEY, baseUrl: other.baseUrl, from: FROM, log: captureLog().log });
    await expect(mailer.send(email())).rejects.toThrow(/application_error \(no status\)/);
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
