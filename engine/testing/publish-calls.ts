/**
 * Test support: a Redis connection that records each EVAL it sends (the publisher's calls) with its size on the
 * wire (RESP, as ioredis writes it) and the published cursor just before it ran, and can act once each has run
 * (steal the lease between two parts of one publish, say).
 */
import { Redis } from "ioredis";
import type { Keyspace } from "../../contract/names.ts";

export interface PublishCall {
  /** The request's bytes: `*<n>\r\n`, then `$<length>\r\n<bytes>\r\n` per argument, EVAL included. */
  readonly bytes: number;
  /** The published cursor as Redis held it when the call was sent (the calls before it had all answered). */
  readonly cursorBefore: string | null;
  /** ARGV[4] of the publisher's script: "1" on the call that may move the cursor. */
  readonly last: string | undefined;
  /** The `more` of the call's last output ("" without), undefined when it has none. */
  readonly lastMore: string | undefined;
}

export function recordPublishCalls(
  url: string,
  keys: Keyspace,
  /** Runs after each call has answered (its index, from 0), before the reply reaches the caller. */
  afterCall: (index: number, call: PublishCall) => Promise<void> = () => Promise.resolve(),
): { writer: Redis; calls: PublishCall[] } {
  const writer = new Redis(url);
  const observer = new Redis(url);
  writer.once("end", () => observer.disconnect());
  const calls: PublishCall[] = [];
  const realEval = writer.eval.bind(writer) as (...args: unknown[]) => Promise<unknown>;
  (writer as unknown as { eval: (...args: unknown[]) => Promise<unknown> }).eval = async (...args) => {
    const strings = ["EVAL", ...args.map(String)];
    // EVAL script numkeys key key key, then the publisher's ARGV: lease, through, ttl, last, then type/body/more.
    const argv = strings.slice(3 + Number(strings[2]));
    const call: PublishCall = {
      bytes: respBytes(strings),
      cursorBefore: await observer.get(keys.enginePublished),
      last: argv[3],
      lastMore: argv.length > 4 ? argv[argv.length - 1] : undefined,
    };
    calls.push(call);
    const reply = await realEval(...args);
    await afterCall(calls.length - 1, call);
    return reply;
  };
  return { writer, calls };
}

function respBytes(args: readonly string[]): number {
  let bytes = `*${args.length}\r\n`.length;
  for (const arg of args) {
    const length = Buffer.byteLength(arg);
    bytes += `$${length}\r\n`.length + length + 2;
  }
  return bytes;
}
