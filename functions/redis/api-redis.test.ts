// scriptRunner's fallback from EVALSHA to EVAL, on the errors each client gives for a script Redis does not have.
import { errors as upstash } from "@upstash/redis";
import { describe, expect, it } from "vitest";
import { scriptRunner } from "./api-redis.ts";

/** A runner whose EVALSHA fails with `error` and whose EVAL answers; the calls made, in order. */
function runnerFailingWith(error: Error) {
  const calls: string[] = [];
  const run = scriptRunner(
    (sha) => {
      calls.push(`evalsha ${sha.length}`);
      return Promise.reject(error);
    },
    (script) => {
      calls.push(`eval ${script}`);
      return Promise.resolve("ran");
    },
  );
  return { run, calls };
}

describe("scriptRunner", () => {
  it.each([
    ["ioredis (ReplyError)", new Error("NOSCRIPT No matching script. Please use EVAL.")],
    [
      "@upstash/redis, Redis's wording",
      new upstash.UpstashError('NOSCRIPT No matching script. Please use EVAL., command was: ["evalsha","ab12",0]'),
    ],
    [
      "@upstash/redis, behind a prefix",
      new upstash.UpstashError('ERR NOSCRIPT No matching script, command was: ["evalsha","ab12",0]'),
    ],
    [
      "@upstash/redis, in lower case",
      new upstash.UpstashError('noscript: no matching script, command was: ["evalsha","ab12",0]'),
    ],
  ])("falls back to EVAL on NOSCRIPT: %s", async (_, error) => {
    const { run, calls } = runnerFailingWith(error);
    expect(await run("return 1", [], [])).toBe("ran");
    expect(calls).toEqual(["evalsha 40", "eval return 1"]);
  });

  it("does not run a failed script again because its arguments, echoed in the error, say noscript", async () => {
    const error = new upstash.UpstashError(
      'ERR user_script:1: boom, command was: ["evalsha","ab12",1,"k","noscript@example.com"]',
    );
    const { run, calls } = runnerFailingWith(error);
    await expect(run("return 1", ["k"], ["noscript@example.com"])).rejects.toBe(error);
    expect(calls).toEqual(["evalsha 40"]);
  });
});
