// The sign-in email's bodies: the link appears once in each, escaped in the HTML, so neither a hostile link nor a
// test that extracts the link can be confused.
import { describe, expect, it } from "vitest";
import { signInEmail } from "./mailer.ts";

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
