// Sessions with a Redis that refuses the sign-in's listing script: no token, so no session that signing out
// everywhere would miss (the sign-in answers 503 and its link still works).
import { describe, expect, it } from "vitest";
import { keyspace } from "../../contract/names.ts";
import type { ApiRedis } from "../redis/api-redis.ts";
import { Sessions } from "./sessions.ts";

describe("Sessions.issue", () => {
  it("rejects with Redis's error when listing the session fails", async () => {
    const redis = { eval: () => Promise.reject(new Error("Connection is closed.")) } as unknown as ApiRedis;
    const sessions = new Sessions(new TextEncoder().encode("s".repeat(32)), redis, keyspace("t:"));
    await expect(sessions.issue({ id: "u-1", email: "u@example.com" })).rejects.toThrow("Connection is closed.");
  });
});
