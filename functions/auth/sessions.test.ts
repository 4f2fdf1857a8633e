// Sessions with a Redis that refuses the sign-in's listing script: the sign-in still gets its token (its link is
// used up already), and says why the session is not listed.
import { describe, expect, it } from "vitest";
import { keyspace } from "../../contract/names.ts";
import { createLogger } from "../../platform/log.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import { Sessions } from "./sessions.ts";

describe("Sessions.issue", () => {
  it("returns a working token when listing the session fails, and logs session_not_listed", async () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("api-test", { level: "warn", sink: (line) => lines.push(JSON.parse(line) as never) });
    const redis = {
      eval: () => Promise.reject(new Error("Redis is down")),
      get: () => Promise.resolve(null), // not revoked
    } as unknown as ApiRedis;
    const sessions = new Sessions(new TextEncoder().encode("s".repeat(32)), redis, keyspace("t:"), log);
    const token = await sessions.issue({ id: "u-1", email: "u@example.com" });
    expect(await sessions.verify(token)).toMatchObject({ userId: "u-1", email: "u@example.com" });
    expect(lines).toEqual([expect.objectContaining({ level: "warn", event: "session_not_listed", userId: "u-1" })]);
  });
});
