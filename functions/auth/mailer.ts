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
  /**
   * Resolves "sent" once the email is on its way, or "address-refused" once the provider refused the address
   * (logged as a warning: the answer to whoever asked is the same for any address). Throws EmailUnavailable when
   * the provider cannot take the email now (the API answers 503); any other error is a bug (500).
   */
  send(email: SignInEmail): Promise<MailOutcome>;
}

export type MailOutcome = "sent" | "address-refused";

/**
 * The email provider is down, too slow, over its limits, or refuses our own configuration (its key, our sender):
 * no email can go out for now, whatever the address. The API answers 503 UNAVAILABLE (backend-failure.ts), with
 * `retryAfterSeconds` as its Retry-After when set (else UNAVAILABLE's).
 */
export class EmailUnavailable extends Error {
  override name = "EmailUnavailable";

  constructor(
    message: string,
    readonly retryAfterSeconds?: number,
    /**
     * The provider answered that it did not take the email. False when that is not known: no answer in time, a
     * connection lost, or a server error that may have come after the email was queued.
     */
    readonly notSent = false,
  ) {
    super(message);
  }
}

/**
 * Resend refused our request for a reason that is our bug (a field it requires, a security check): the API answers
 * 500, and Resend said it did not take the email.
 */
export class EmailRequestRefused extends Error {
  override name = "EmailRequestRefused";
}

/** The error from `Mailer.send` says the provider did not take the email: no email can have gone out. */
export function surelyNotSent(err: unknown): boolean {
  return err instanceof EmailRequestRefused || (err instanceof EmailUnavailable && err.notSent);
}

/**
 * Retry-After of a sign-in whose email cannot go out until someone acts: our key or sender refused (a setting to fix
 * and deploy), or a daily or monthly quota used up (a plan to raise, or the period to end; longer when Resend says
 * so). Minutes, not seconds; and each attempt counts against the address's sign-in limit.
 */
export const EMAIL_BLOCKED_RETRY_AFTER_S = 300;

/**
 * The longest wait passed on from Resend's own Retry-After: a day, the longest a daily quota can take to reset;
 * a header saying more is not believed.
 */
export const EMAIL_RETRY_AFTER_MAX_S = 86_400;

/** Resend's quota refusals (429s that a wait of seconds does not end). */
const QUOTA_NAMES: ReadonlySet<string> = new Set(["daily_quota_exceeded", "monthly_quota_exceeded"]);

const RESEND_API = "https://api.resend.com";

/**
 * How long Resend may take to answer before the email counts as not sent (503): it answers in well under a second,
 * and the sign-in's other work (two Redis counts, one Postgres insert) must fit beside it in the functions' 15 s.
 */
export const RESEND_TIMEOUT_MS = 5_000;

/** What a refusal from Resend means for the sign-in (resendRefusal). */
export type ResendRefusal = "outage" | "api-key" | "sender" | "address" | "bug";

/**
 * What Resend's error means for the sign-in, by status and name as its error reference lists them
 * (resend.com/docs/api-reference/errors):
 * - outage: no status (the client's `application_error` when the request failed: no connection, or our time
 *   limit; or a JSON error without Resend's `statusCode`, from something in front of it), 5xx (`application_error`,
 *   `internal_server_error` 500, `service_unavailable` 503), and 429 (`rate_limit_exceeded`,
 *   `daily_quota_exceeded`, `monthly_quota_exceeded`): retry later.
 * - api-key: 401 (`missing_api_key`, `restricted_api_key`) and 403 (`invalid_api_key`, `restricted_api_key` "API
 *   key is not active", `suspended_api_key`): RESEND_API_KEY is not a key Resend takes for sending.
 * - sender: 403 `validation_error` (the sender's domain is not verified, or resend.dev's testing sender, which
 *   sends only to the account's own address), 422 `invalid_from_address`, and a 400 or 422 `validation_error` that
 *   names the `from` field (Resend quotes the field it refuses: "Invalid `from` field."): EMAIL_FROM is not a
 *   sender Resend takes.
 * - address: a 400 or 422 `validation_error` that names the `to` field, Resend refusing the recipient ("Invalid
 *   `to` field."), an address our own check let through. The errors page documents `validation_error` for a bad
 *   field as 400 ("We found an error with one or more fields in the request … The message will contain more
 *   details about what field"); Resend has answered a malformed address with 422 too: both are taken alike.
 * - bug: the rest (a 400 or 422 `validation_error` about another field such as `subject`, or naming none, 422
 *   `missing_required_field`, …): our request is wrong, and no sign-in is answered as if its email went out.
 * The first three stop every sign-in, whatever the address: 503s, and a refused key or sender is also an error log
 * naming the setting to fix. A refused address must not tell the asker more than any other address would: it is
 * answered as sent.
 */
export function resendRefusal(error: {
  statusCode?: number | null | undefined;
  name: string;
  message: string;
}): ResendRefusal {
  const { statusCode: status, name } = error;
  if (typeof status !== "number" || status >= 500 || status === 429) return "outage";
  if (status === 403 && name === "validation_error") return "sender";
  if (status === 401 || status === 403) return "api-key";
  if (status === 422 && name === "invalid_from_address") return "sender";
  if ((status === 400 || status === 422) && name === "validation_error") {
    if (FIELD_NAMED("from").test(error.message)) return "sender";
    if (FIELD_NAMED("to").test(error.message)) return "address";
  }
  return "bug";
}

/** Resend names the field it refuses, quoted or not: "Invalid `to` field.", "Invalid from field." */
const FIELD_NAMED = (field: string) => new RegExp(`\`${field}\`|\\b${field} field\\b`, "i");

/** The setting a refusal of our configuration names, in the error log that tells the operator what to fix. */
const REFUSED_SETTING = { "api-key": "RESEND_API_KEY", sender: "EMAIL_FROM" } as const;

export function createResendMailer(options: {
  apiKey: string;
  baseUrl?: string | undefined;
  from: string;
  log: Logger;
  timeoutMs?: number;
}): Mailer {
  const { apiKey, from, log } = options;
  const timeoutMs = options.timeoutMs ?? RESEND_TIMEOUT_MS;
  // An empty key would make the client fall back to RESEND_API_KEY, and a missing baseUrl to RESEND_BASE_URL:
  // configuration comes from the entry only.
  if (apiKey === "") throw new Error("createResendMailer: the Resend API key is empty");
  const client = new Resend(apiKey, { baseUrl: options.baseUrl ?? RESEND_API });
  return {
    async send(email) {
      const signal = AbortSignal.timeout(timeoutMs);
      const result = await client.emails.send(
        { from, to: email.to, subject: email.subject, text: email.text, html: email.html },
        { signal },
      );
      if (result.error === null) {
        log.info("email_sent", { provider: "resend", id: result.data.id });
        return "sent";
      }
      const { name, statusCode, message } = result.error;
      const providerWait = retryAfterOf(result.headers);
      // The client reports its own time limit as any failed request: say which it was.
      const reason = signal.aborted ? `no answer within ${timeoutMs} ms` : `${name} (${statusCode ?? "no status"})`;
      // The message is the server's; redact the key anyway so it can never reach a log or a response.
      const detail = `${reason}: ${message}`.replaceAll(apiKey, "[redacted]");
      const refusal = resendRefusal(result.error);
      if (refusal === "address") {
        log.warn("email_address_refused", { provider: "resend", error: detail });
        return "address-refused";
      }
      // A refusal, a rate limit or "unavailable" says the email was not taken; a 500, 502 or 504 (a gateway's) may
      // come after it was.
      const notSent = !signal.aborted && typeof statusCode === "number" && (statusCode < 500 || statusCode === 503);
      if (refusal === "api-key" || refusal === "sender") {
        const setting = REFUSED_SETTING[refusal];
        log.error("email_setting_refused", { provider: "resend", setting, error: detail });
        throw new EmailUnavailable(
          `Resend refused ${setting}, so no email can be sent: ${detail}`,
          EMAIL_BLOCKED_RETRY_AFTER_S,
          notSent,
        );
      }
      if (refusal === "outage") {
        // A quota used up is not over in seconds, whatever a header says.
        const wait = QUOTA_NAMES.has(name) ? Math.max(providerWait ?? 0, EMAIL_BLOCKED_RETRY_AFTER_S) : providerWait;
        throw new EmailUnavailable(`Resend did not send the email: ${detail}`, wait, notSent);
      }
      // resendRefusal calls every answer without a status, and every 5xx, an outage: this is a 4xx.
      throw new EmailRequestRefused(`Resend did not send the email: ${detail}`);
    },
  };
}

/**
 * Resend's Retry-After (it sends one with its rate limit's 429), when it is delay-seconds: at least 1, at most
 * EMAIL_RETRY_AFTER_MAX_S. Undefined without one, or for another form.
 */
function retryAfterOf(headers: Record<string, string> | null): number | undefined {
  const value = headers?.["retry-after"]?.trim();
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Math.min(Math.max(1, Number(value)), EMAIL_RETRY_AFTER_MAX_S);
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
    async send(email: SignInEmail): Promise<MailOutcome> {
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
      return "sent";
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
