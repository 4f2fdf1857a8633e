/** Test support: keys of a test run or benchmark in the test Redis, removed without blocking Redis. */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { keyspace, type Keyspace } from "../../contract/names.ts";

export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (found.length > 0) await redis.unlink(...found);
    cursor = next;
  } while (cursor !== "0");
}

/**
 * A test file's connection to the test Redis and fresh keyspaces on it (`freshKeys`), every one of them deleted by
 * `close()` (its afterAll).
 */
export function scratchKeyspaces(url: string): {
  redis: Redis;
  freshKeys: () => Keyspace;
  close: () => Promise<void>;
} {
  const redis = new Redis(url);
  const prefixes: string[] = [];
  return {
    redis,
    freshKeys: () => {
      const prefix = `test:${randomUUID()}:`;
      prefixes.push(prefix);
      return keyspace(prefix);
    },
    close: async () => {
      for (const prefix of prefixes) await deleteKeysWithPrefix(redis, prefix);
      redis.disconnect();
    },
  };
}
