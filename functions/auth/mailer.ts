/**
 * Sending the sign-in email (docs/api.md, sign-in). Two mailers behind one interface: Resend when a key is configured, and a
 * dev mailbox when it is not (local), which logs each email and keeps it in Redis for the local stack to show.
 * Neither reads the environment: the entry passes the key, base URL and sender in.
 */
import { Resend } from "resend";
import type { Logger } from "../../platform/log.ts";
import type { ApiRedis } from "../redis/api-redis.ts";

export interface SignInEmail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  /** The sign-in link the bodies carry, so the dev mailbox can log it without parsing a body. */
  readonly link: string;
}

export interface Mailer {
  send(email: SignInEmail): Promise<void>;
}

const RESEND_API = "https://api.resend.com";

export function createResendMailer(options: {
  apiKey: string;
  baseUrl?: string | undefined;
  from: string;
  log: Logger;
}): Mailer {
  const { apiKey, from, log } = options;
  // An empty key would make the client fall back to RESEND_API_KEY, and a missing baseUrl to RESEND_BASE_URL:
  // configuration comes from the entry only.
  if (apiKey === "") throw new Error("createResendMailer: the Resend API key is empty");
  const client = new Resend(apiKey, { baseUrl: options.baseUrl ?? RESEND_API });
  return {
    async send(email) {
      const result = await client.emails.send({
        from,
        to: email.to,
        subject: email.subject,
        text: email.text,
        html: email.html,
      });
      if (result.error !== null) {
        const { name, statusCode, message } = result.error;
        // The message is the server's; redact the key anyway so it can never reach a log or a response.
        const detail = `${name} (${statusCode ?? "no status"}): ${message}`.replaceAll(apiKey, "[redacted]");
        throw new Error(`Resend did not send the email: ${detail}`);
      }
      log.info("email_sent", { provider: "resend", id: result.data.id });
    },
  };
}

/** One email as the dev mailbox keeps it (JSON in a Redis list, newest first). */
export interface DevMail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly link: string;
  /** ISO 8601. */
  readonly sentAt: string;
}

// One round trip, and the list never grows past `keep` even with concurrent senders.
const PUSH_AND_TRIM =
  "redis.call('LPUSH', KEYS[1], ARGV[1]) redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1) return 1";

/**
 * The mailer when no Resend key is configured. Kept in Redis, not process memory, so a mailbox page served by one
 * process (or a stateless Lambda-style handler) sees emails sent by another.
 */
export function createDevMailbox(options: { redis: ApiRedis; key: string; log: Logger; keep?: number }) {
  const { redis, key, log } = options;
  const keep = options.keep ?? 50;
  if (!Number.isInteger(keep) || keep < 1)
    throw new Error(`createDevMailbox: keep must be a positive integer, got ${keep}`);
  return {
    async send(email: SignInEmail): Promise<void> {
      const mail: DevMail = {
        to: email.to,
        subject: email.subject,
        text: email.text,
        html: email.html,
        link: email.link,
        sentAt: new Date().toISOString(),
      };
      // Documented local behaviour (docs/api.md, dev mailbox): with no Resend key the link is logged, so a developer can sign in
      // from the terminal. Never used where a key is configured.
      log.info("dev_email", { to: mail.to, subject: mail.subject, link: mail.link });
      await redis.eval(PUSH_AND_TRIM, [key], [JSON.stringify(mail), String(keep)]);
    },
    /** The newest `limit` emails, newest first. */
    async list(limit: number): Promise<DevMail[]> {
      if (limit < 1) return [];
      const entries = await redis.lrange(key, 0, limit - 1);
      return entries.map((entry) => JSON.parse(entry) as DevMail);
    },
  } satisfies Mailer & { list(limit: number): Promise<DevMail[]> };
}

export function signInEmail(options: { to: string; link: string; expiresInMinutes: number }): SignInEmail {
  const { to, link, expiresInMinutes } = options;
  const expiry = `It works once and expires in ${expiresInMinutes} minutes. If you did not ask to sign in, ignore this email.`;
  return {
    to,
    subject: "Your sign-in link",
    link,
    text: `Open this link to sign in to paper-broker:\n\n${link}\n\n${expiry}\n`,
    html: `<p>Sign in to paper-broker:</p>\n<p><a href="${escapeHtml(link)}">Sign in</a></p>\n<p>${escapeHtml(expiry)}</p>\n`,
  };
}

function escapeHtml(value: string): string {
  return value
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}
