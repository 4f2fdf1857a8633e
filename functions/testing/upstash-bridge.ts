/**
 * A local stand-in for Upstash's REST API in front of a real Redis, so the Upstash adapter runs its contract suite
 * without an account or a network. It speaks the protocol as `@upstash/redis` uses it:
 *
 * - `POST /` with a JSON array command, `POST /pipeline` and `POST /multi-exec` with an array of them.
 * - `Authorization: Bearer <token>`, else 401.
 * - Replies `{"result": …}`, or `{"error": "…"}` with status 400 for a single command; a pipeline or transaction
 *   answers 200 with one of those per command. Errors are never encoded.
 * - `Upstash-Encoding: base64`: every string in a result, nested ones included, goes out as the base64 of its bytes
 *   (status replies such as OK too); integers stay numbers, nil stays null.
 *
 * Blocking commands run on a connection of their own each, so a waiting BLPOP holds up no other request. Commands
 * are sent with upper-case names, which keeps ioredis's per-command reply transformers (HGETALL → object) out.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { createBlockingConnections } from "../redis/blocking-connections.ts";

export interface UpstashBridge {
  readonly url: string;
  readonly token: string;
  close(): Promise<void>;
}

type Command = [string, ...string[]];
type Reply = { result: unknown } | { error: string };

const BLOCKING = new Set([
  "BLPOP",
  "BRPOP",
  "BLMOVE",
  "BRPOPLPUSH",
  "BLMPOP",
  "BZPOPMIN",
  "BZPOPMAX",
  "BZMPOP",
  "WAIT",
]);

export async function startUpstashBridge(options: { redisUrl: string; token: string }): Promise<UpstashBridge> {
  const redis = new Redis(options.redisUrl, { protocol: 2, connectionName: "upstash-bridge" });
  const blocking = createBlockingConnections(() => redis.duplicate({ connectionName: "upstash-bridge-blocking" }), 4);

  async function run(command: Command): Promise<unknown> {
    const [name, ...args] = command;
    if (!isBlocking(command)) return redis.callBuffer(name, ...args);
    const connection = blocking.acquire();
    let reusable = false;
    try {
      const reply = await connection.callBuffer(name, ...args);
      reusable = true;
      return reply;
    } finally {
      blocking.release(connection, reusable);
    }
  }

  async function transaction(commands: Command[], base64: boolean): Promise<Reply[]> {
    const multi = redis.multi();
    for (const [name, ...args] of commands) multi.callBuffer(name, ...args);
    const results = (await multi.exec()) ?? [];
    return results.map(([error, result]) => (error ? { error: error.message } : { result: encode(result, base64) }));
  }

  async function answer(req: IncomingMessage): Promise<{ status: number; body: unknown }> {
    if (req.method !== "POST") return { status: 405, body: { error: "Only POST is supported" } };
    if (req.headers.authorization !== `Bearer ${options.token}`)
      return { status: 401, body: { error: "Unauthorized" } };
    const encoding = req.headers["upstash-encoding"];
    const base64 = typeof encoding === "string" && encoding.toLowerCase() === "base64";
    const body: unknown = JSON.parse(await readBody(req));
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/") {
      const reply = await settle(() => run(toCommand(body)), base64);
      return { status: "error" in reply ? 400 : 200, body: reply };
    }
    if (path === "/pipeline" || path === "/multi-exec") {
      if (!Array.isArray(body)) throw new TypeError("expected an array of commands");
      const commands = body.map(toCommand);
      if (path === "/multi-exec") return { status: 200, body: await transaction(commands, base64) };
      const replies: Reply[] = [];
      for (const command of commands) replies.push(await settle(() => run(command), base64));
      return { status: 200, body: replies };
    }
    return { status: 404, body: { error: `Unknown endpoint ${path}` } };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    answer(req).then(
      ({ status, body }) => send(res, status, body),
      (error: unknown) => send(res, 400, { error: error instanceof Error ? error.message : String(error) }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token: options.token,
    async close() {
      blocking.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await redis.quit();
    },
  };
}

function isBlocking([name, ...args]: Command): boolean {
  if (BLOCKING.has(name)) return true;
  return (name === "XREAD" || name === "XREADGROUP") && args.some((arg) => arg.toUpperCase() === "BLOCK");
}

/** The client sends strings, numbers and booleans; Redis takes them all as strings. */
function toCommand(value: unknown): Command {
  if (!Array.isArray(value) || value.length === 0) throw new TypeError("expected a non-empty command array");
  const parts = value.map((part: unknown) => {
    if (typeof part === "string" || typeof part === "number" || typeof part === "boolean") return String(part);
    throw new TypeError(`unsupported command argument ${JSON.stringify(part)}`);
  });
  const [name, ...args] = parts;
  return [name!.toUpperCase(), ...args];
}

async function settle(call: () => Promise<unknown>, base64: boolean): Promise<Reply> {
  try {
    return { result: encode(await call(), base64) };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/** Redis replies (RESP2 with buffers: Buffer, number, null, arrays, errors nested in arrays) as Upstash sends them. */
function encode(reply: unknown, base64: boolean): unknown {
  if (Buffer.isBuffer(reply)) return reply.toString(base64 ? "base64" : "utf8");
  if (Array.isArray(reply)) return reply.map((item) => encode(item, base64));
  if (reply instanceof Error) return encode(Buffer.from(reply.message), base64);
  return reply;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
