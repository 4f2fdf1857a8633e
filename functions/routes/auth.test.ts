// The sign-in link's lifetime is stated from SIGN_IN_TOKEN_TTL_MINUTES, so the answer and the document cannot
// promise another than the tokens have.
import { describe, expect, it, vi } from "vitest";
import type * as SignInTokens from "../auth/sign-in-tokens.ts";

vi.mock("../auth/sign-in-tokens.ts", async (importOriginal) => ({
  ...(await importOriginal<typeof SignInTokens>()),
  SIGN_IN_TOKEN_TTL_MINUTES: 7,
}));

const { SIGN_IN_MESSAGE } = await import("./auth.ts");
const { apiDocument } = await import("../testing/document.ts");

describe("POST /api/v1/auth", () => {
  it("states the link's lifetime from SIGN_IN_TOKEN_TTL_MINUTES, in its answer and its description", () => {
    expect(SIGN_IN_MESSAGE).toContain("It expires in 7 minutes.");
    const { post } = (apiDocument() as { paths: Record<string, { post: { description: string } }> }).paths[
      "/api/v1/auth"
    ]!;
    expect(post.description).toContain("expires in 7 minutes");
    expect(post.description).not.toContain("15");
  });
});
