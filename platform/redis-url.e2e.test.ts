/**
 * Every container component reads REDIS_URL through platform/config.ts redisUrl: a redis:// URL naming an Upstash host,
 * which takes TLS only, stops each at start with exit 2 and the configuration error, instead of reconnecting for ever.
 * Runs the built entries (dist/): `npm run build` first.
 */
import { describe, expect, it } from "vitest";
import { spawnComponent } from "./testing/processes.ts";

describe("REDIS_URL without TLS for an Upstash host", () => {
  it.each(["engine", "worker", "poller", "stream"] as const)(
    "stops the %s at start with exit 2 and a line naming REDIS_URL and rediss://",
    { timeout: 30_000 },
    async (component) => {
      const child = spawnComponent(component, {
        REDIS_URL: "redis://default:s3cret@eu1-fine-cat-1234.upstash.io:6379",
        DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
      });
      expect(await child.exited).toEqual({ code: 2, signal: null });
      const said = child.other.join("\n");
      expect(said).toContain(
        `${component}: configuration error: REDIS_URL names an Upstash host, which takes TLS only: use rediss://`,
      );
      expect(said).not.toContain("s3cret");
    },
  );
});
