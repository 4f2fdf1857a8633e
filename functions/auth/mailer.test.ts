// The sign-in email's bodies: the link appears once in each, escaped in the HTML, so neither a hostile link nor a
// test that extracts the link can be confused. And what each of Resend's errors means for a sign-in.
import { describe, expect, it } from "vitest";
import { resendRefusal, signInEmail } from "./mailer.ts";

const count = (haystack: string, needle: string) => haystack.split(needle).length - 1;

describe("signInEmail", () => {
  it("carries the link once in the text and once in the HTML", () => {
    const link = "https://app.example/api/v1/auth/verify?token=abc123";
    const email = signInEmail({ to: "ada@example.com", link, expiresInMinutes: 15 });
    expect(email).toMatchObject({ to: "ada@example.com", subject: "Your sign-in link", link });
    expect(count(email.text, link)).toBe(1);
    expect(count(email.html, link)).toBe(1);
    expect(email.text).toContain("15 minutes");
  });

  it("escapes the link in the HTML body", () => {
    const link = `https://app.example/verify?token=a&b="x"<script>'`;
    const email = signInEmail({ to: "ada@example.com", link, expiresInMinutes: 15 });
    expect(email.html).not.toContain(link);
    expect(email.html).not.toContain("<script>");
    expect(count(email.html, "https://app.example/verify?token=a&amp;b=&quot;x&quot;&lt;script&gt;&#39;")).toBe(1);
    expect(count(email.text, link)).toBe(1);
  });
});

// Resend's documented errors (resend.com/docs/api-reference/errors).
describe("resendRefusal", () => {
  const refusal = (statusCode: number | null | undefined, name: string, message = "") =>
    resendRefusal({ statusCode, name, message });

  it("an outage, a limit or an answer from something in front of Resend: retry later", () => {
    expect(refusal(null, "application_error", "Unable to fetch data. The request could not be resolved.")).toBe(
      "outage",
    );
    expect(refusal(undefined, "undefined", "Bad gateway")).toBe("outage");
    expect(refusal(500, "application_error")).toBe("outage");
    expect(refusal(500, "internal_server_error")).toBe("outage");
    expect(refusal(502, "application_error", "Internal server error.")).toBe("outage"); // an HTML 502 page
    expect(refusal(503, "service_unavailable")).toBe("outage");
    for (const name of ["rate_limit_exceeded", "daily_quota_exceeded", "monthly_quota_exceeded"])
      expect(refusal(429, name), name).toBe("outage");
  });

  it("our key refused: RESEND_API_KEY", () => {
    expect(refusal(401, "missing_api_key")).toBe("api-key");
    expect(refusal(401, "restricted_api_key")).toBe("api-key");
    expect(refusal(401, "validation_error", "API key is invalid")).toBe("api-key");
    expect(refusal(403, "invalid_api_key")).toBe("api-key");
    expect(refusal(403, "restricted_api_key", "API key is not active")).toBe("api-key");
    expect(refusal(403, "suspended_api_key")).toBe("api-key");
  });

  it("our sender refused: EMAIL_FROM", () => {
    expect(refusal(403, "validation_error", "You can only send testing emails to your own email address")).toBe(
      "sender",
    );
    expect(refusal(403, "validation_error", "The example.com domain is not verified.")).toBe("sender");
    expect(refusal(422, "invalid_from_address", "Invalid `from` field")).toBe("sender");
    expect(refusal(422, "validation_error", "Invalid `from` field. The email address needs to follow …")).toBe(
      "sender",
    );
    expect(refusal(422, "validation_error", "Invalid from field. The email address needs to follow …")).toBe("sender");
    expect(refusal(400, "validation_error", "Invalid `from` field. The email address needs to follow …")).toBe(
      "sender",
    );
  });

  it("the recipient refused: answered as sent", () => {
    expect(refusal(422, "validation_error", "Invalid `to` field. The email address needs to follow …")).toBe("address");
    // The status the errors page documents for a field refused: the same answer.
    expect(refusal(400, "validation_error", "Invalid `to` field. The email address needs to follow …")).toBe("address");
  });

  it("our request malformed: a bug", () => {
    expect(refusal(400, "validation_error", "We found an error with one or more fields in the request.")).toBe("bug");
    expect(refusal(422, "missing_required_field")).toBe("bug");
    // A field of ours other than the recipient's: not answered as if the email went out.
    expect(refusal(422, "validation_error", "The `subject` field must be a `string`.")).toBe("bug");
    expect(refusal(422, "validation_error", "The `html` field must be a `string`.")).toBe("bug");
    expect(refusal(422, "validation_error", "Invalid `reply_to` field.")).toBe("bug");
    expect(refusal(400, "validation_error", "The `subject` field must be a `string`.")).toBe("bug");
    expect(refusal(422, "invalid_attachment")).toBe("bug");
    expect(refusal(404, "not_found")).toBe("bug");
    expect(refusal(409, "invalid_idempotent_request")).toBe("bug");
  });
});
