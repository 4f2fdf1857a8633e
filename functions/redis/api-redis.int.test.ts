import { randomUUID } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import {
  startUpstashBridge,
  UPSTASH_MAX_ITEM_BYTES,
  UPSTASH_MAX_REQUEST_BYTES,
  type UpstashBridge,
} from "../testing/upstash-bridge.ts";
import { describeApiRedisContract } from "./api-redis.contract.ts";
import { createIoredisApiRedis } from "./ioredis-api-redis.ts";
import { createUpstashApiRedis } from "./upstash-api-redis.ts";
import { startScratchRedis } from "../../platform/testing/processes.ts";
import { TEST_REDIS_URL } from "../../platform/testing/test-servers.ts";

const REDIS_URL = TEST_REDIS_URL;
let bridge: UpstashBridge;

beforeAll(async () => {
  bridge = await startUpstashBridge({ redisUrl: REDIS_URL, token: randomUUID() });
});

afterAll(async () => {
  await bridge.close();
});

describeApiRedisContract("ioredis", (redisUrl) => Promise.resolve({ redis: createIoredisApiRedis(redisUrl) }));
// Past its cap of blocking connections the ioredis adapter polls: with a cap of 0, every waiter does.
describeApiRedisContract("ioredis, past its blocking connections (every waiter polls)", (redisUrl) =>
  Promise.resolve({ redis: createIoredisApiRedis(redisUrl, { maxBlocking: 0 }) }),
);
describeApiRedisContract("upstash (through the local Upstash REST peer)", async (redisUrl) => {
  const peer = await startUpstashBridge({ redisUrl, token: randomUUID() });
  return { redis: createUpstashApiRedis(peer), close: () => peer.close() };
});

/** A port nothing listens on: taken from the OS, then released. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describe("ioredis: blocking connections in use are capped", () => {
  it("at most maxBlocking waiters hold a connection; the others poll, and every one gets its answer", async () => {
    const scratch = await startScratchRedis("blocking-cap");
    const plain = new Redis(scratch.url);
    const redis = createIoredisApiRedis(scratch.url, { maxBlocking: 3 });
    const blockingClients = async () =>
      ((await plain.client("LIST")) as string).split("\n").filter((line) => line.includes("name=api-blocking")).length;
    try {
      const queues = Array.from({ length: 10 }, (_, i) => `test:blocking-cap:${i}`);
      const waiters = queues.map((queue) => redis.waitFirst(queue, 5_000));
      void Promise.allSettled(waiters); // a failed check below must not leave the rest unhandled
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await blockingClients()).toBe(3);
      for (const [i, queue] of queues.entries()) await plain.rpush(queue, `answer-${i}`);
      expect(await Promise.all(waiters)).toEqual(queues.map((_, i) => `answer-${i}`));
    } finally {
      await redis.close();
      plain.disconnect();
      await scratch.stop();
    }
  });
});

describe("a status reply inside a script's array, through each adapter", () => {
  it('ioredis gives its text; @upstash/redis decodes the bare OK Upstash sends there as base64: "8"', async () => {
    // Why ApiRedis.eval asks scripts to return a nested status reply's text (.ok), as none of ours fails to.
    const script =
      "return {redis.call('SET', KEYS[1], 'x'), {redis.call('SET', KEYS[1], 'x')}, redis.call('SET', KEYS[1], 'x').ok}";
    const key = `test:status-in-array:${randomUUID()}`;
    const tcp = createIoredisApiRedis(REDIS_URL);
    const rest = createUpstashApiRedis({ url: bridge.url, token: bridge.token });
    try {
      expect(await tcp.eval(script, [key], [])).toEqual(["OK", ["OK"], "OK"]);
      // Directly in the result array the client decodes every string as base64 (atob("OK") is the byte "8"); one
      // level deeper, and at the top, it leaves "OK" as it is.
      expect(await rest.eval(script, [key], [])).toEqual(["8", ["OK"], "OK"]);
    } finally {
      await tcp.close();
      await rest.close();
      const plain = new Redis(REDIS_URL);
      await plain.del(key);
      plain.disconnect();
    }
  });
});

describe("when Redis cannot be reached", () => {
  it("ioredis: ping and waitFirst reject instead of hanging", { timeout: 10_000 }, async () => {
    const redis = createIoredisApiRedis(`redis://127.0.0.1:${await deadPort()}`);
    await expect(redis.ping()).rejects.toThrow();
    await expect(redis.waitFirst("any", 30_000)).rejects.toThrow();
    await redis.close();
  });

  it("upstash: ping rejects, and waitFirst, which polls on through failed polls, rejects at its deadline", async () => {
    const redis = createUpstashApiRedis({ url: `http://127.0.0.1:${await deadPort()}`, token: "t" });
    await expect(redis.ping()).rejects.toThrow();
    await expect(redis.waitFirst("any", 1_000)).rejects.toThrow();
  });

  it("upstash: a poll that fails in mid-wait is no answer yet; the wait goes on and gets the answer", async () => {
    // In front of the peer, a server that answers the second poll with a gateway's error page (the client does not
    // send a request again for an answer it got), and passes every other request on.
    const key = `test:poll-blip:${randomUUID()}`;
    let polls = 0;
    const blip = createHttpServer((req, res) => {
      void (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        if (++polls === 2) {
          res.writeHead(502, { "content-type": "text/html" }).end("<html><body>502 Bad Gateway</body></html>");
          return;
        }
        const answer = await fetch(`${bridge.url}${req.url ?? "/"}`, {
          method: "POST",
          headers: { ...(req.headers as Record<string, string>), host: new URL(bridge.url).host },
          body: Buffer.concat(chunks).toString("utf8"),
        });
        res.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text());
      })();
    });
    await new Promise<void>((resolve) => blip.listen(0, "127.0.0.1", resolve));
    const plain = new Redis(REDIS_URL);
    try {
      const redis = createUpstashApiRedis({
        url: `http://127.0.0.1:${(blip.address() as AddressInfo).port}`,
        token: bridge.token,
      });
      const answered = redis.waitFirst(key, 2_000).catch((err: unknown) => err);
      for (let i = 0; i < 200 && polls < 3; i++) await new Promise((resolve) => setTimeout(resolve, 5));
      await plain.rpush(key, "done");
      expect(await answered).toBe("done");
    } finally {
      await plain.del(key);
      plain.disconnect();
      blip.closeAllConnections();
      await new Promise((resolve) => blip.close(resolve));
    }
  });

  it("upstash: a call's time limit covers its retry", { timeout: 10_000 }, async () => {
    // The first connection is cut after a while (a network error: the client sends the request again), the next
    // never answered: the call ends at its one time limit, not a limit per attempt.
    const sockets = new Set<Socket>();
    let cutOne = false;
    const flaky = createServer((socket) => {
      sockets.add(socket);
      if (!cutOne) {
        cutOne = true;
        setTimeout(() => socket.destroy(), 250);
      }
    });
    await new Promise<void>((resolve) => flaky.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(flaky.address() as AddressInfo).port}`;
      const redis = createUpstashApiRedis({ url, token: "t", requestTimeoutMs: 400 });
      const started = performance.now();
      await expect(redis.get("any")).rejects.toThrow(/timeout|aborted/i);
      expect(cutOne).toBe(true);
      // Per attempt it would be 250 ms, the 100 ms backoff, then 400 more
      expect(performance.now() - started).toBeLessThan(600);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => flaky.close(resolve));
    }
  });

  it("upstash: a wait whose polls are slow ends within one request of its timeout", async () => {
    const slow = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t", delayMs: 600 });
    try {
      const redis = createUpstashApiRedis({ url: slow.url, token: slow.token });
      await redis.ping(); // the connection made, so that each poll takes the peer's delay and no more
      const started = performance.now();
      expect(await redis.waitFirst(`test:slow-polls:${randomUUID()}`, 700)).toBeNull();
      // Polls of 600 ms at the start and 600 ms later: the second ends past the deadline and is the last. A third
      // would end past 1,800 ms.
      expect(performance.now() - started).toBeLessThan(700 + 600 + 300);
    } finally {
      await slow.close();
    }
  });

  it("upstash: a wrong token is refused", async () => {
    const redis = createUpstashApiRedis({ url: bridge.url, token: "not-the-token" });
    await expect(redis.ping()).rejects.toThrow(/Unauthorized/);
    await expect(redis.get("any")).rejects.toThrow(/Unauthorized/);
  });
});

describe("the local Upstash peer refuses what Upstash's REST API refuses", () => {
  let plain: Redis;
  const prefix = `test:upstash-peer:${randomUUID()}:`;
  beforeAll(() => {
    plain = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    const stale = await plain.keys(`${prefix}*`);
    if (stale.length > 0) await plain.del(...stale);
    plain.disconnect();
  });

  /** One raw request, as the REST API takes it. */
  async function post(
    path: string,
    body: unknown,
    to: UpstashBridge = bridge,
    headers: Record<string, string> = {},
  ): Promise<[number, unknown]> {
    const res = await fetch(`${to.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${to.token}`, "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return [res.status, await res.json()];
  }

  it("reads replies that arrive in many pieces: a value of megabytes, a list of thousands", async () => {
    const big = "é".repeat(1_500_000); // 3 MB of UTF-8
    await plain.set(`${prefix}big-value`, big);
    expect(await post("/", ["GET", `${prefix}big-value`])).toEqual([200, { result: big }]);
    const items = Array.from({ length: 20_000 }, (_, i) => `item-${i}`);
    await plain.rpush(`${prefix}long-list`, ...items);
    expect(await post("/", ["LRANGE", `${prefix}long-list`, "0", "-1"])).toEqual([200, { result: items }]);
  });

  it("with Upstash-Encoding: base64, encodes every string but the status reply OK, nested ones too", async () => {
    const base64 = { "upstash-encoding": "base64" };
    const b64 = (text: string) => Buffer.from(text).toString("base64");
    const k = `${prefix}encoding`;
    // As Upstash's docs show it: SET answers "OK", GET the value encoded
    expect(await post("/", ["SET", k, "bar"], bridge, base64)).toEqual([200, { result: "OK" }]);
    expect(await post("/", ["GET", k], bridge, base64)).toEqual([200, { result: b64("bar") }]);
    // A stored "OK" is a string like any other; so is the status PONG
    await plain.set(k, "OK");
    expect(await post("/", ["GET", k], bridge, base64)).toEqual([200, { result: b64("OK") }]);
    expect(await post("/", ["PING"], bridge, base64)).toEqual([200, { result: b64("PONG") }]);
    const script =
      "return {redis.call('SET', KEYS[1], 'x'), 'OK', redis.call('PING'), {redis.call('SET', KEYS[1], 'y')}}";
    expect(await post("/", ["EVAL", script, "1", k], bridge, base64)).toEqual([
      200,
      { result: ["OK", b64("OK"), b64("PONG"), ["OK"]] },
    ]);
    expect(
      await post(
        "/pipeline",
        [
          ["SET", k, "1"],
          ["GET", k],
        ],
        bridge,
        base64,
      ),
    ).toEqual([200, [{ result: "OK" }, { result: b64("1") }]]);
    expect(
      await post(
        "/multi-exec",
        [
          ["SET", k, "2"],
          ["GET", k],
        ],
        bridge,
        base64,
      ),
    ).toEqual([200, [{ result: "OK" }, { result: b64("2") }]]);
    // Without the header, every string as it is
    expect(await post("/", ["EVAL", script, "1", k])).toEqual([200, { result: ["OK", "OK", "PONG", ["OK"]] }]);
  });

  it("blocking commands: 400 with Upstash's error shape, the list untouched", async () => {
    await plain.rpush(`${prefix}list`, "a");
    for (const command of [
      ["BLPOP", `${prefix}list`, "1"],
      ["brpop", `${prefix}list`, "1"],
      ["BRPOPLPUSH", `${prefix}list`, `${prefix}other`, "1"],
      ["BLMOVE", `${prefix}list`, `${prefix}other`, "LEFT", "LEFT", "1"],
      ["BZPOPMIN", `${prefix}zset`, "1"],
      ["XREAD", "COUNT", "1", "BLOCK", "10", "STREAMS", `${prefix}stream`, "$"],
      ["XREADGROUP", "GROUP", "g", "c", "block", "10", "STREAMS", `${prefix}stream`, ">"],
    ]) {
      const [status, body] = await post("/", command);
      expect(status).toBe(400);
      expect(Object.keys(body as object)).toEqual(["error"]);
      expect((body as { error: string }).error).toMatch(/^ERR \w+ over the REST API: blocking/);
    }
    expect(await plain.lrange(`${prefix}list`, 0, -1)).toEqual(["a"]);
    // The non-blocking forms run.
    expect(await post("/", ["XREAD", "COUNT", "1", "STREAMS", `${prefix}stream`, "0"])).toEqual([
      200,
      { result: null },
    ]);
    expect(await post("/", ["LPOP", `${prefix}list`])).toEqual([200, { result: "a" }]);
  });

  it("Pub/Sub but PUBLISH and PUBSUB, connection commands but PING and ECHO, WATCH: refused", async () => {
    for (const command of [
      ["SUBSCRIBE", "c"],
      ["PSUBSCRIBE", "c*"],
      ["SPUBLISH", "c", "hi"],
      ["SELECT", "1"],
      ["CLIENT", "LIST"],
      ["WATCH", "k"],
    ])
      expect((await post("/", command))[0]).toBe(400);
    expect(await post("/", ["PUBLISH", `${prefix}channel`, "hi"])).toEqual([200, { result: 0 }]);
    expect(await post("/", ["ECHO", "hi"])).toEqual([200, { result: "hi" }]);
  });

  it("a key, hash field or set member over 32,000 bytes: Upstash's size errors, nothing written", async () => {
    const over = "k".repeat(UPSTASH_MAX_ITEM_BYTES + 1);
    const atLimit = `${prefix}${"k".repeat(UPSTASH_MAX_ITEM_BYTES - prefix.length)}`;
    const refused = (what: string) => ({
      error: `ERR max ${what} size exceeded. Limit: ${UPSTASH_MAX_ITEM_BYTES} bytes, Actual: ${UPSTASH_MAX_ITEM_BYTES + 1} bytes`,
    });
    expect(await post("/", ["SET", over, "v"])).toEqual([400, refused("key")]);
    expect(await post("/", ["EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", over])).toEqual([
      400,
      refused("key"),
    ]);
    expect(await post("/", ["HSET", `${prefix}h`, "f", "v", over, "v"])).toEqual([400, refused("field")]);
    expect(await post("/", ["SADD", `${prefix}s`, over])).toEqual([400, refused("member")]);
    expect(await post("/", ["ZADD", `${prefix}z`, "NX", "1", "m", "2", over])).toEqual([400, refused("member")]);
    expect(await plain.exists(`${prefix}h`, `${prefix}s`, `${prefix}z`)).toBe(0);
    // At the limit, and a value of any size (values are bounded by the request size only): stored.
    expect(await post("/", ["SET", atLimit, over])).toEqual([200, { result: "OK" }]);
    expect(await post("/", ["HSET", `${prefix}h`, "f", over])).toEqual([200, { result: 1 }]);
    expect(await post("/", ["ZADD", `${prefix}z`, "1", "k".repeat(UPSTASH_MAX_ITEM_BYTES)])).toEqual([
      200,
      { result: 1 },
    ]);
    // In a pipeline the command alone is refused; in a transaction, the transaction.
    const [status, replies] = await post("/pipeline", [
      ["SADD", `${prefix}s`, over],
      ["SADD", `${prefix}s`, "m"],
    ]);
    expect([status, replies]).toEqual([200, [refused("member"), { result: 1 }]]);
    expect(
      await post("/multi-exec", [
        ["SET", `${prefix}t`, "v"],
        ["SET", over, "v"],
      ]),
    ).toEqual([400, refused("key")]);
    expect(await plain.exists(`${prefix}t`)).toBe(0);
  });

  it("a pipeline answers each command; a transaction with a refused command is refused whole", async () => {
    const [status, replies] = await post("/pipeline", [
      ["SET", `${prefix}p`, "1"],
      ["BLPOP", `${prefix}p:list`, "1"],
      ["GET", `${prefix}p`],
    ]);
    expect(status).toBe(200);
    const [set, blpop, get] = replies as [unknown, { error: string }, unknown];
    expect([set, get]).toEqual([{ result: "OK" }, { result: "1" }]);
    expect(blpop.error).toMatch(/^ERR BLPOP/);
    const refused = await post("/multi-exec", [
      ["SET", `${prefix}t`, "1"],
      ["BRPOP", `${prefix}t:list`, "1"],
    ]);
    expect(refused[0]).toBe(400);
    expect((refused[1] as { error: string }).error).toMatch(/^ERR BRPOP/);
    expect(await plain.exists(`${prefix}t`)).toBe(0);
  });

  it("a request over the size cap: ERR max request size exceeded, nothing written", async () => {
    expect(UPSTASH_MAX_REQUEST_BYTES).toBe(10 * 1024 * 1024);
    const big = "x".repeat(UPSTASH_MAX_REQUEST_BYTES);
    expect(await post("/", ["SET", `${prefix}big`, big])).toEqual([400, { error: "ERR max request size exceeded" }]);
    expect(await post("/pipeline", [["SET", `${prefix}big`, big]])).toEqual([
      400,
      { error: "ERR max request size exceeded" },
    ]);
    expect(await plain.exists(`${prefix}big`)).toBe(0);
    const small = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t", maxRequestBytes: 100 });
    try {
      const command = ["SET", `${prefix}small`, ""];
      const fits = 100 - JSON.stringify(command).length;
      command[2] = "y".repeat(fits);
      expect(await post("/", command, small)).toEqual([200, { result: "OK" }]);
      command[2] = "y".repeat(fits + 1);
      expect((await post("/", command, small))[0]).toBe(400);
    } finally {
      await small.close();
    }
  });

  it("counts the commands it runs, each of a pipeline on its own; delays each request by delayMs", async () => {
    const slow = await startUpstashBridge({ redisUrl: REDIS_URL, token: "t", delayMs: 40 });
    try {
      const started = performance.now();
      await post("/pipeline", [["PING"], ["GET", `${prefix}none`], ["GET", `${prefix}none`]], slow);
      expect(performance.now() - started).toBeGreaterThanOrEqual(38);
      await post("/", ["BLPOP", `${prefix}none`, "1"], slow);
      expect(Object.fromEntries(slow.commandCounts())).toEqual({ PING: 1, GET: 2 });
      slow.resetCommandCounts();
      expect(slow.commandCounts().size).toBe(0);
    } finally {
      await slow.close();
    }
  });

  it("the Upstash adapter waits for an element with non-blocking LINDEXes, a few per wait", async () => {
    const redis = createUpstashApiRedis({ url: bridge.url, token: bridge.token });
    bridge.resetCommandCounts();
    const answered = redis.waitFirst(`${prefix}answer`, 2_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await plain.rpush(`${prefix}answer`, "done");
    expect(await answered).toBe("done");
    const counts = Object.fromEntries(bridge.commandCounts());
    expect(Object.keys(counts)).toEqual(["LINDEX"]);
    // Pauses of 2, 4, 8, 16, then 20 ms: about ten polls in 100 ms, not one per millisecond.
    expect(counts.LINDEX).toBeGreaterThanOrEqual(4);
    expect(counts.LINDEX).toBeLessThanOrEqual(12);
  });

  it("the Upstash adapter's poll whose reply is lost after it ran: the client's retry still reads the answer", async () => {
    // In front of the peer, a server that runs each request there but, for the first poll that finds the element,
    // cuts the connection instead of answering: the command ran, its reply never arrived.
    const key = `${prefix}lost-reply`;
    let cut = 0;
    const lossy = createHttpServer((req, res) => {
      void (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const body = Buffer.concat(chunks).toString("utf8");
        const answer = await fetch(`${bridge.url}${req.url ?? "/"}`, {
          method: "POST",
          headers: { ...(req.headers as Record<string, string>), host: new URL(bridge.url).host },
          body,
        });
        const text = await answer.text();
        if (cut === 0 && body.includes(key) && (JSON.parse(text) as { result?: unknown }).result !== null) {
          cut += 1;
          req.socket.destroy();
          return;
        }
        res.writeHead(answer.status, { "content-type": "application/json" }).end(text);
      })();
    });
    await new Promise<void>((resolve) => lossy.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(lossy.address() as AddressInfo).port}`;
      const redis = createUpstashApiRedis({ url, token: bridge.token });
      await plain.rpush(key, "executed");
      expect(await redis.waitFirst(key, 1_000)).toBe("executed");
      expect(cut).toBe(1);
    } finally {
      lossy.closeAllConnections();
      await new Promise((resolve) => lossy.close(resolve));
    }
  });

  it("a wait that gets no answer polls ever less often: tens of LINDEXes in 3 s, not one per 20 ms", async () => {
    const redis = createUpstashApiRedis({ url: bridge.url, token: bridge.token });
    bridge.resetCommandCounts();
    const started = performance.now();
    expect(await redis.waitFirst(`${prefix}never`, 3_000)).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(2_990);
    // 2, 4, 8, 16, 20, 20, 20 ms, then a fifth of the time waited (×1.2 per poll): about 30. At a steady
    // 20 ms it would be about 150.
    const polls = bridge.commandCounts().get("LINDEX") ?? 0;
    expect(polls).toBeGreaterThanOrEqual(10);
    expect(polls).toBeLessThanOrEqual(35);
  });
});
