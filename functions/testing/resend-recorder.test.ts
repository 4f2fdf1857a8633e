// The Resend stand-in refuses the cases its header lists as Resend documents them, so a test that passes against it
// does not rest on one of those requests, which the real Resend would turn down.
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../platform/log.ts";
import { createResendMailer, EmailUnavailable } from "../auth/mailer.ts";
import { RESEND_DEFAULT_REQUESTS_PER_SECOND, startResendRecorder, type ResendRecorder } from "./resend-recorder.ts";

const quiet = createLogger("recorder-test", { sink: () => {} });
let recorder: ResendRecorder | undefined;
afterEach(async () => {
  await recorder?.close();
  recorder = undefined;
});

async function post(body: Record<string, unknown>) {
  const res = await fetch(`${recorder!.baseUrl}/emails`, {
    method: "POST",
    headers: { authorization: "Bearer re_test", "content-type": "application/json" },
    body: JSON.stringify({ subject: "Hi", text: "Hello", ...body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

describe("the Resend recorder", () => {
  it("sends from a sender of a verified domain to addresses in either documented form", async () => {
    recorder = await startResendRecorder();
    for (const [from, to] of [
      ["Paper Broker <login@paper-broker.test>", "ada@example.com"],
      ["login@paper-broker.test", ["Ada <ada@example.com>", "bob@example.org"]],
    ] as const)
      expect((await post({ from, to })).status, from).toBe(200);
    expect(recorder.sent).toHaveLength(2);
  });

  it("refuses a malformed sender (422 invalid_from_address) or recipient (400 naming `to`), and over 50 recipients", async () => {
    recorder = await startResendRecorder();
    const from = "login@paper-broker.test";
    for (const bad of ["not an address", "Name <nobody>", "a@b", "<a@example.com", "a@example.com, b@example.com"]) {
      const asSender = await post({ from: bad, to: "ada@example.com" });
      expect([asSender.status, asSender.body.name, asSender.body.message], bad).toEqual([
        422,
        "invalid_from_address",
        expect.stringMatching(/^Invalid `from` field\./),
      ]);
      const asRecipient = await post({ from, to: ["ada@example.com", bad] });
      expect([asRecipient.status, asRecipient.body.message], bad).toEqual([
        400,
        expect.stringMatching(/^Invalid `to` field\./),
      ]);
    }
    const many = (n: number) => Array.from({ length: n }, (_, i) => `u${i}@example.com`);
    expect((await post({ from, to: many(50) })).status).toBe(200);
    const tooMany = await post({ from, to: many(51) });
    expect([tooMany.status, tooMany.body.message]).toEqual([400, expect.stringMatching(/^Invalid `to` field\./)]);
    expect(recorder.sent).toHaveLength(1);
  });

  it("a malformed sender is, for the mailer, our sender refused: EmailUnavailable and an error log naming EMAIL_FROM", async () => {
    recorder = await startResendRecorder();
    const events: Record<string, unknown>[] = [];
    const log = createLogger("recorder-test", {
      sink: (line) => events.push(JSON.parse(line) as Record<string, unknown>),
    });
    const mailer = createResendMailer({ apiKey: "re_test", baseUrl: recorder.baseUrl, from: "Name <nobody>", log });
    const email = { to: "ada@example.com", subject: "s", text: "t", html: "<p>t</p>", link: "https://x.example/" };
    const error = await mailer.send(email).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EmailUnavailable);
    expect((error as Error).message).toMatch(/^Resend refused EMAIL_FROM.*invalid_from_address \(422\)/);
    expect(events.filter((e) => e.event === "email_setting_refused").map((e) => e.setting)).toEqual(["EMAIL_FROM"]);
    expect(recorder.sent).toHaveLength(0);
  });

  it("sends from Resend's testing sender only to the account's own address (403 otherwise)", async () => {
    recorder = await startResendRecorder({ accountEmail: "Owner@Example.com" });
    const from = "Paper Broker <onboarding@resend.dev>";
    expect((await post({ from, to: "owner@example.com" })).status).toBe(200);
    const other = await post({ from, to: ["owner@example.com", "ada@example.com"] });
    expect([other.status, other.body.name, other.body.message]).toEqual([
      403,
      "validation_error",
      expect.stringMatching(/^You can only send testing emails to your own email address \(owner@example\.com\)/),
    ]);
    // The mailer reads that as our sender refused: no email can go out, 503 for minutes.
    const mailer = createResendMailer({ apiKey: "re_test", baseUrl: recorder.baseUrl, from, log: quiet });
    const email = { to: "ada@example.com", subject: "s", text: "t", html: "<p>t</p>", link: "https://x.example/" };
    await expect(mailer.send(email)).rejects.toBeInstanceOf(EmailUnavailable);
    expect(recorder.sent).toHaveLength(1);
  });

  it("with a rate limit, answers 429 rate_limit_exceeded past it, with Resend's headers, and again a second later", async () => {
    recorder = await startResendRecorder({ requestsPerSecond: RESEND_DEFAULT_REQUESTS_PER_SECOND });
    const send = () => post({ from: "login@paper-broker.test", to: "ada@example.com" });
    const answers = await Promise.all([send(), send(), send()]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 429]);
    const limited = answers.find((a) => a.status === 429)!;
    expect(limited.body.name).toBe("rate_limit_exceeded");
    expect(limited.headers.get("retry-after")).toBe("1");
    expect([limited.headers.get("ratelimit-limit"), limited.headers.get("ratelimit-remaining")]).toEqual(["2", "0"]);
    await new Promise((resolve) => setTimeout(resolve, 1_050));
    expect((await send()).status).toBe(200);
    expect(recorder.sent).toHaveLength(3);
  });
});
