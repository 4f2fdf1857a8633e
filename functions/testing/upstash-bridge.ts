/**
 * A local peer for Upstash's REST API in front of a real Redis, so the Upstash adapter runs its contract suite and
 * the app its journey without an account or a network. It serves what Upstash documents and refuses what Upstash
 * refuses, so code that works here does not meet a refusal only once deployed. Sources (Upstash docs):
 *
 * - "REST API" (upstash.com/docs/redis/features/restapi): `POST /` with a JSON array command, `POST /pipeline`
 *   (not atomic: one `{result}` or `{error}` per command, status 200) and `POST /multi-exec` (the same, atomic; a
 *   transaction refused as a whole answers one `{error}`); `Authorization: Bearer <token>`, else 401 (its body here is
 *   `{"error": "Unauthorized"}`, as Upstash has answered, github.com/upstash/redis-js/issues/711); 400 with
 *   `{"error": "…"}` for a syntax error, an unsupported command or a failed one; 405 for a method other than HEAD,
 *   GET, POST, PUT. Its section "Base64 Encoded Responses": with `Upstash-Encoding: base64` "all strings in the
 *   response will be base64 encoded, except for the "OK" response" (`SET` answers `{"result":"OK"}`, `GET`
 *   `{"result":"YmFy"}`). So the status reply OK goes unencoded, and any other string (a stored value that reads
 *   "OK", the status PONG) encoded. Whether that holds for an OK nested in an array (a script returning
 *   `{redis.call('SET', …)}`) the docs do not say; the peer takes the exemption at its word there too, the case that
 *   @upstash/redis misreads: it keeps a top-level or twice-nested "OK", but base64-decodes one directly inside a
 *   result array, "OK" becoming "8" (ApiRedis.eval, redis/api-redis.ts). To tell a status reply from a bulk string,
 *   the peer reads Redis with its own RESP2 client (resp2-connection.ts).
 *   Its table "REST - Redis API Compatibility" refuses: blocking list commands ("BLPOP - BRPOP - BRPOPLPUSH"),
 *   blocking sorted-set commands ("BZPOPMAX - BZPOPMIN"), the blocking versions of XREAD and XREADGROUP, WATCH /
 *   UNWATCH / DISCARD, every Pub/Sub command but PUBLISH and PUBSUB (SPUBLISH too; SUBSCRIBE is its own
 *   server-sent-events endpoint, `/subscribe`, as MONITOR is `/monitor`), every connection command but PING and ECHO,
 *   and cluster commands. The wording of those refusals is not documented; the shape (400, `{"error": "ERR …"}`) is.
 * - "ERR max request size exceeded" (upstash.com/docs/redis/troubleshooting/max_request_size_exceeded) and
 *   "Pricing & Billing" (upstash.com/docs/redis/overall/billing): a request over the plan's max request size (10 MB
 *   on Free, Pay-As-You-Go and the smaller fixed plans) fails with that error; each command of a pipeline or
 *   transaction is billed on its own, and every plan caps commands per second (10,000, or 16,000 on the largest).
 * - "ERR max key size exceeded", "ERR max field size exceeded", "ERR max member size exceeded"
 *   (upstash.com/docs/redis/troubleshooting/max_key_size_exceeded, max_field_size_exceeded, max_member_size_exceeded):
 *   a key, a hash field, a set or sorted-set member over "32Kb" is refused ("Limit: X bytes, Actual: Z bytes"), a
 *   hard limit. The peer refuses keys of any command, scripts' KEYS included (Redis's COMMAND GETKEYS names them), and
 *   the fields and members of HSET, HMSET, HSETNX, SADD, SMOVE, ZADD and ZINCRBY; not what a script writes, which it
 *   does not see. The functions' own keys, fields and members are far below it; the first place to meet it would be a
 *   sorted set whose members are event JSON, the worker's events store, written over TCP, not through this peer.
 *
 * Not served, as nothing here uses them: the path form (`/set/foo/bar`, 404 here), `/subscribe`, `/monitor`,
 * RESP2 responses. The newer blocking commands (BLMOVE, BLMPOP, BZMPOP) and WAIT/WAITAOF are refused with the
 * documented ones: they block a connection as those do. MULTI/EXEC as plain commands are refused too (`/multi-exec`
 * is the transaction); EXEC on a connection shared by every request could not be right.
 *
 * `delayMs` adds a round trip's worth of latency to every request (half before the command runs, half after), as a
 * function's network path to Upstash would; `commandCounts()` counts the commands run, as Upstash bills them.
 * `refuseEveryRequest(error)` has it answer every authorised request with that error, as Upstash refuses a database
 * over its plan's limits ("ERR max daily request limit exceeded", upstash.com/docs/redis/troubleshooting/); the
 * status of those answers is not documented, and the peer gives the one of a failed command, 400.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { openResp2Connection, StatusReply, type Resp2Reply } from "./resp2-connection.ts";

export interface UpstashBridgeOptions {
  readonly redisUrl: string;
  readonly token: string;
  /** Added to every request, half before its commands run and half after. Default 0. */
  readonly delayMs?: number;
  /** Largest request body accepted, in bytes. Default 10 MB, Upstash's cap on Free and Pay-As-You-Go. */
  readonly maxRequestBytes?: number;
}

export interface UpstashBridge {
  readonly url: string;
  readonly token: string;
  /** Commands run since the start or the last reset, by upper-case name; refused ones are not counted. */
  commandCounts(): Map<string, number>;
  resetCommandCounts(): void;
  /** Every authorised request is refused with `error` from now on; undefined ends it. */
  refuseEveryRequest(error: string | undefined): void;
  close(): Promise<void>;
}

export const UPSTASH_MAX_REQUEST_BYTES = 10 * 1024 * 1024;

/**
 * Upstash's limit on a key, a hash field and a set or sorted-set member: "32Kb" in its docs, a hard limit; taken as
 * 32,000 bytes, the smaller reading, so that what passes here passes there.
 */
export const UPSTASH_MAX_ITEM_BYTES = 32_000;

const tooLarge = (what: "key" | "field" | "member", bytes: number) =>
  `ERR max ${what} size exceeded. Limit: ${UPSTASH_MAX_ITEM_BYTES} bytes, Actual: ${bytes} bytes`;

/** ZADD's flags, which come before its score and member pairs. */
const ZADD_FLAGS = new Set(["NX", "XX", "GT", "LT", "CH", "INCR"]);

/** The hash fields or set members a write command stores, from its arguments (after the name). */
const ITEM_ARGUMENTS: Record<string, (args: string[]) => { kind: "field" | "member"; values: string[] }> = {
  HSET: (args) => ({ kind: "field", values: args.slice(1).filter((_, i) => i % 2 === 0) }),
  HMSET: (args) => ({ kind: "field", values: args.slice(1).filter((_, i) => i % 2 === 0) }),
  HSETNX: (args) => ({ kind: "field", values: args.slice(1, 2) }),
  SADD: (args) => ({ kind: "member", values: args.slice(1) }),
  SMOVE: (args) => ({ kind: "member", values: args.slice(2, 3) }),
  ZINCRBY: (args) => ({ kind: "member", values: args.slice(2, 3) }),
  ZADD: (args) => {
    let i = 1;
    while (i < args.length && ZADD_FLAGS.has(args[i]!.toUpperCase())) i++;
    return { kind: "member", values: args.slice(i).filter((_, j) => j % 2 === 1) };
  },
};

type Command = [string, ...string[]];
type Reply = { result: unknown } | { error: string };

/** Refused on every endpoint, with the reason given in the error. */
const REFUSED = new Map<string, string>();
const refuse = (reason: string, names: string) => {
  for (const name of names.split(" ")) REFUSED.set(name, reason);
};
refuse("blocking commands are not supported", "BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP");
refuse("blocking commands are not supported", "WAIT WAITAOF");
refuse("only PUBLISH and PUBSUB are supported", "SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE");
refuse("only PUBLISH and PUBSUB are supported", "SUNSUBSCRIBE SPUBLISH");
refuse("only PING and ECHO are supported", "AUTH CLIENT HELLO QUIT RESET SELECT");
refuse("not supported", "WATCH UNWATCH DISCARD MONITOR CLUSTER READONLY READWRITE ASKING");
refuse("send a transaction to /multi-exec", "MULTI EXEC");

export async function startUpstashBridge(options: UpstashBridgeOptions): Promise<UpstashBridge> {
  const redis = openResp2Connection(options.redisUrl, "upstash-bridge");
  const maxRequestBytes = options.maxRequestBytes ?? UPSTASH_MAX_REQUEST_BYTES;
  const halfDelayMs = (options.delayMs ?? 0) / 2;
  const counts = new Map<string, number>();
  const count = ([name]: Command) => counts.set(name, (counts.get(name) ?? 0) + 1);
  let refusingWith: string | undefined;

  /** Upstash's refusal of a key, hash field or set member over its size limit (see the module comment). */
  async function sizeRefusal([name, ...args]: Command): Promise<string | undefined> {
    // Only a request with an argument over the limit can be refused: most are answered without a look at Redis.
    if (!args.some((arg) => Buffer.byteLength(arg) > UPSTASH_MAX_ITEM_BYTES)) return undefined;
    const [keys] = await redis.send([["COMMAND", "GETKEYS", name, ...args]]);
    for (const key of Array.isArray(keys) ? keys : []) {
      if (Buffer.isBuffer(key) && key.length > UPSTASH_MAX_ITEM_BYTES) return tooLarge("key", key.length);
    }
    const items = ITEM_ARGUMENTS[name]?.(args) ?? { kind: "member" as const, values: [] };
    for (const value of items.values) {
      if (Buffer.byteLength(value) > UPSTASH_MAX_ITEM_BYTES) return tooLarge(items.kind, Buffer.byteLength(value));
    }
    return undefined;
  }

  async function run(command: Command, base64: boolean): Promise<Reply> {
    const refusal = refusalOf(command) ?? (await sizeRefusal(command));
    if (refusal !== undefined) return { error: refusal };
    count(command);
    const [reply] = await redis.send([command]);
    return reply instanceof Error ? { error: reply.message } : { result: encode(reply!, base64) };
  }

  async function transaction(commands: Command[], base64: boolean): Promise<{ status: number; body: unknown }> {
    for (const command of commands) {
      const refusal = refusalOf(command) ?? (await sizeRefusal(command));
      if (refusal !== undefined) return { status: 400, body: { error: refusal } };
    }
    for (const command of commands) count(command);
    const replies = await redis.send([["MULTI"], ...commands, ["EXEC"]]);
    const results = replies.at(-1);
    // EXECABORT: a command Redis refused while queueing discards the transaction, answered as one error.
    if (results instanceof Error) return { status: 400, body: { error: results.message } };
    const body = (Array.isArray(results) ? results : []).map((result) =>
      result instanceof Error ? { error: result.message } : { result: encode(result, base64) },
    );
    return { status: 200, body };
  }

  async function answer(req: IncomingMessage): Promise<{ status: number; body: unknown }> {
    if (!["HEAD", "GET", "POST", "PUT"].includes(req.method ?? ""))
      return { status: 405, body: { error: "Method not allowed" } };
    if (req.headers.authorization !== `Bearer ${options.token}`)
      return { status: 401, body: { error: "Unauthorized" } };
    if (refusingWith !== undefined) {
      await readBody(req, maxRequestBytes);
      return { status: 400, body: { error: refusingWith } };
    }
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "POST" || !["/", "/pipeline", "/multi-exec"].includes(path ?? ""))
      return { status: 404, body: { error: `The local Upstash peer does not serve ${req.method} ${path}` } };
    const text = await readBody(req, maxRequestBytes);
    if (text === undefined) return { status: 400, body: { error: "ERR max request size exceeded" } };
    const encoding = req.headers["upstash-encoding"];
    const base64 = typeof encoding === "string" && encoding.toLowerCase() === "base64";
    const body: unknown = JSON.parse(text);
    if (path === "/") {
      const reply = await run(toCommand(body), base64);
      return { status: "error" in reply ? 400 : 200, body: reply };
    }
    if (!Array.isArray(body)) throw new TypeError("ERR expected a JSON array of commands");
    const commands = body.map(toCommand);
    if (path === "/multi-exec") return transaction(commands, base64);
    const replies: Reply[] = [];
    for (const command of commands) replies.push(await run(command, base64));
    return { status: 200, body: replies };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const reply = async () => {
      if (halfDelayMs > 0) await sleep(halfDelayMs);
      const answered = await answer(req).catch((error: unknown) => ({
        status: 400,
        body: { error: error instanceof Error ? error.message : String(error) },
      }));
      if (halfDelayMs > 0) await sleep(halfDelayMs);
      return answered;
    };
    void reply().then(({ status, body }) => send(res, status, body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token: options.token,
    commandCounts: () => new Map(counts),
    resetCommandCounts: () => counts.clear(),
    refuseEveryRequest: (error) => {
      refusingWith = error;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await redis.close();
    },
  };
}

/** Upstash's refusal of a command, or undefined when it runs it. */
function refusalOf([name, ...args]: Command): string | undefined {
  const reason =
    REFUSED.get(name) ??
    ((name === "XREAD" || name === "XREADGROUP") && args.some((arg) => arg.toUpperCase() === "BLOCK")
      ? "blocking versions of XREAD and XREADGROUP are not supported"
      : undefined);
  return reason === undefined ? undefined : `ERR ${name} over the REST API: ${reason}`;
}

/** The client sends strings, numbers and booleans; Redis takes them all as strings. */
function toCommand(value: unknown): Command {
  if (!Array.isArray(value) || value.length === 0) throw new TypeError("ERR expected a non-empty command array");
  const parts = value.map((part: unknown) => {
    if (typeof part === "string" || typeof part === "number" || typeof part === "boolean") return String(part);
    throw new TypeError(`ERR unsupported command argument ${JSON.stringify(part)}`);
  });
  const [name, ...args] = parts;
  return [name!.toUpperCase(), ...args];
}

/**
 * A Redis reply as Upstash sends it. With base64, every string is encoded but the status reply OK, which goes as it
 * is wherever it sits, nested in an array too (a script's `{redis.call('SET', …)}`); a bulk string that reads "OK" (a
 * stored value) and the other status replies (PONG) are encoded as any string is.
 */
function encode(reply: Resp2Reply, base64: boolean): unknown {
  if (reply instanceof StatusReply)
    return base64 && reply.text !== "OK" ? Buffer.from(reply.text).toString("base64") : reply.text;
  if (Buffer.isBuffer(reply)) return reply.toString(base64 ? "base64" : "utf8");
  if (Array.isArray(reply)) return reply.map((item) => encode(item, base64));
  if (reply instanceof Error) return encode(Buffer.from(reply.message), base64);
  return reply;
}

/** The request body, or undefined once it passes `maxBytes` (the rest is drained, not kept). */
async function readBody(req: IncomingMessage, maxBytes: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= maxBytes) chunks.push(chunk as Buffer);
  }
  return size > maxBytes ? undefined : Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
