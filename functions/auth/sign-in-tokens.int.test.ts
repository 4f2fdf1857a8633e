// The sign-in links' statements on a freshly migrated database: an address's unused links are found through the
// partial index on email (migrations/011_sign_in_tokens_unused_email.sql), not by reading every link; a used link
// records the session it signed in (013_sign_in_tokens_session.sql), and works on a schema from before that too.
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MIGRATIONS_DIR, migrate, migrationFiles } from "../../platform/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../platform/testing/test-database.ts";
import {
  checkSignInToken,
  consumedBy,
  consumeSignInToken,
  CONSUME_SIGN_IN_TOKEN,
  issueSignInToken,
} from "./sign-in-tokens.ts";

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await migrate(t.db, t.log);
});
afterAll(() => t.drop());

/**
 * The plan of `sql` with sequential scans off: on a table this small reading it whole is cheapest, and the question
 * is whether an index can serve the statement at all.
 */
async function plan(sql: string, params: unknown[]): Promise<string> {
  return t.db.transaction(async (tx) => {
    await tx.query("SET LOCAL enable_seqscan = off");
    const { rows } = await tx.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`, params);
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  });
}

describe("an address's unused sign-in links", () => {
  it("are found through the partial index on email when a link is used", async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 20; i++) tokens.push(await issueSignInToken(t.db, `user${i % 5}@example.com`));
    await t.db.query("ANALYZE sign_in_tokens");
    expect(await plan(CONSUME_SIGN_IN_TOKEN, [Buffer.alloc(32), "s-0"])).toMatch(
      /Index Scan .*sign_in_tokens_unused_email/,
    );

    // And the statements still do what they did: using a link voids its address's others, and only those.
    expect(await consumeSignInToken(t.db, tokens[0]!, "s-0")).toBe(true); // user0
    expect(await checkSignInToken(t.db, tokens[5]!)).toBeUndefined(); // user0's other link
    expect((await checkSignInToken(t.db, tokens[1]!))?.email).toBe("user1@example.com");
    expect((await checkSignInToken(t.db, tokens[2]!))?.email).toBe("user2@example.com");
  });
});

describe("the session a link signed in", () => {
  it("is recorded on the link it used: that session is told so, no other, nor a link voided beside it", async () => {
    const used = await issueSignInToken(t.db, "recorded@example.com");
    const voided = await issueSignInToken(t.db, "recorded@example.com");
    expect(await consumedBy(t.db, used, "s-1")).toBe(false); // not used yet
    expect(await consumeSignInToken(t.db, used, "s-1")).toBe(true);
    expect(await consumedBy(t.db, used, "s-1")).toBe(true);
    expect(await consumedBy(t.db, used, "s-2")).toBe(false);
    expect(await consumedBy(t.db, voided, "s-1")).toBe(false);
    // A second use, by any session, is refused and changes nobody's record.
    expect(await consumeSignInToken(t.db, used, "s-2")).toBe(false);
    expect(await consumedBy(t.db, used, "s-1")).toBe(true);
    expect(await consumedBy(t.db, used, "s-2")).toBe(false);
  });

  it("is not needed on a schema from before its column: the link is still used once", async () => {
    const before = await createTestDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    try {
      const files = await migrationFiles(DEFAULT_MIGRATIONS_DIR);
      for (const name of files.slice(0, files.indexOf("013_sign_in_tokens_session.sql")))
        await copyFile(join(DEFAULT_MIGRATIONS_DIR, name), join(dir, name));
      await migrate(before.db, before.log, dir);
      const token = await issueSignInToken(before.db, "old-schema@example.com");
      expect(await consumeSignInToken(before.db, token, "s-1")).toBe(true);
      expect(await consumeSignInToken(before.db, token, "s-2")).toBe(false);
      // Asking who used it cannot be answered there: the sign-in keeps its 503 (routes/auth.ts).
      await expect(consumedBy(before.db, token, "s-1")).rejects.toThrow(/session_id/);
    } finally {
      await before.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
