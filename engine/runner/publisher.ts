/**
 * Publishing engine outputs: one atomic Lua call per batch that first checks the lease still holds this
 * engine's fencing value, then XADDs every output in order, records the batch's last input id as published and
 * extends the lease (so a busy leader renews with every batch, not only on its timer).
 * A fenced-off engine gets an error and writes nothing. The published cursor never moves back: a batch that ends at
 * or below it is already out (the core is deterministic, so its outputs are the same) and only extends the lease.
 * So a call that runs twice adds nothing the second time (ioredis resends a command whose reply was lost with the
 * connection), and a replay or takeover re-emits only the part before the cursor of a batch that straddles it.
 * Output ids are in the bodies (`<input id>:<n>`), so consumers drop those. A batch holds whole steps, so each
 * event's `more` (outputEntries) is exact. Snapshots never go past the published id: a restart from one must
 * re-emit every output that was not yet out.
 *
 * A batch too large for one request (PUBLISH_MAX_BYTES: a price that fires thousands of stops is one step) goes
 * in several calls, one after the other, each fenced and each checking the cursor as above; only the last moves
 * the cursor. An output larger than the bound on its own goes alone in its call, which is then past it. `more` is
 * worked out over the whole batch first, so the entries are those one call would write. An engine that stops
 * between two calls (fenced, crashed) leaves the first part of the batch out with the cursor before it: the next
 * leader publishes the whole batch again, and consumers drop the part they had by output id, as they drop a
 * straddling batch's (docs/architecture.md, "The worker"). A call before the last whose reply is lost and that
 * ioredis resends writes its part twice, dropped the same way.
 */
import type { Redis } from "ioredis";
import type { EngineOutput } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { continuedOutputs } from "../../contract/stream-fields.ts";

/**
 * The most one publish call sends to Redis, in bytes of the request on the wire (UTF-8: an asset a refusal
 * echoes may be any characters), unless it holds a single output that is larger alone. Upstash refuses a larger
 * request with "ERR max request size exceeded": 10 MB on Free and Pay-As-You-Go (upstash.com/docs/redis/
 * troubleshooting/max_request_size_exceeded). A refused publish is no fencing error: the leader would exit, and
 * every leader after it would fail the same batch the same way. A tenth of that cap: Redis, which runs a script
 * alone, is held for a few thousand XADDs at a time, not tens of thousands; a live batch of quotes (1,000 of ~270
 * bytes) still goes in one call.
 */
export const PUBLISH_MAX_BYTES = 1024 * 1024;

/**
 * What RESP adds to each argument (`$<length>\r\n` before it, `\r\n` after), at most, for one under 100 MB; so
 * the count is never below what goes on the wire.
 */
const ARG_FRAMING_BYTES = 16;

/**
 * What one output adds to a call: its type (ASCII), body (`bodyBytes` in UTF-8) and `more`, each a framed argument.
 */
function outputBytes(type: string, bodyBytes: number): number {
  return type.length + bodyBytes + 1 + 3 * ARG_FRAMING_BYTES;
}

/**
 * A batch's outputs, each encoded as it is added (the body publishOutputs sends), with their size so far: the leader
 * ends a batch by size as well as by time (`full`), between inputs.
 */
export class EncodedOutputs {
  readonly outputs: EngineOutput[] = [];
  readonly bodies: string[] = [];
  /** What each output adds to a publish call, in bytes: counted once, here, where the body is encoded. */
  readonly sizes: number[] = [];
  /** What these outputs add to a publish call, in bytes (PUBLISH_MAX_BYTES says how they are counted). */
  bytes = 0;

  push(output: EngineOutput): void {
    const body = JSON.stringify(output);
    this.outputs.push(output);
    this.bodies.push(body);
    const size = outputBytes(output.type, Buffer.byteLength(body));
    this.sizes.push(size);
    this.bytes += size;
  }

  /**
   * Past three quarters of PUBLISH_MAX_BYTES: a batch ended here, or after the next input (unless that one is itself
   * large), still goes in one call.
   */
  get full(): boolean {
    return this.bytes >= (PUBLISH_MAX_BYTES * 3) / 4;
  }
}

/**
 * KEYS[1] the lease, KEYS[2] the output stream, KEYS[3] the published cursor; ARGV[1] the lease value, ARGV[2] the
 * batch's last input id, ARGV[3] the lease TTL, ARGV[4] '1' when the call is the batch's last (it moves the cursor),
 * then type, body and more of each output. Returns -1 when the batch is out already, else how many it added. Ids
 * compare as numbers, ms then seq (a 13-digit ms is exact in a Lua double; as strings "999-0" would sort after
 * "1000-0").
 */
const FENCED_XADD = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED engine lease lost') end
local published = redis.call('GET', KEYS[3])
if published then
  local pms, pseq = string.match(published, '^(%d+)-(%d+)$')
  local tms, tseq = string.match(ARGV[2], '^(%d+)-(%d+)$')
  pms, pseq, tms, tseq = tonumber(pms), tonumber(pseq), tonumber(tms), tonumber(tseq)
  if tms < pms or (tms == pms and tseq <= pseq) then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return -1
  end
end
for i = 5, #ARGV, 3 do
  if ARGV[i + 2] == '1' then redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1], 'more', '1')
  else redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1]) end
end
if ARGV[4] == '1' then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return (#ARGV - 4) / 3`;

export class FencedError extends Error {}

/**
 * Publishes a batch's outputs (possibly none) and marks `throughInputId` published, if the lease is ours and the
 * published cursor is before `throughInputId` (else it publishes nothing); the lease then lives `ttlMs` from now.
 * `extended` is told of each call Redis answered (one, or one per part of a batch past PUBLISH_MAX_BYTES), with
 * when it was sent (performance.now() and Date.now()): each extended the lease.
 */
export async function publishOutputs(
  redis: Redis,
  keys: Keyspace,
  lease: { readonly value: string | undefined; readonly ttlMs: number },
  throughInputId: string,
  outputs: readonly EngineOutput[] | EncodedOutputs,
  extended?: (sentAt: number, sentAtMs: number) => void,
): Promise<void> {
  const encoded = outputs instanceof EncodedOutputs ? outputs : encode(outputs);
  const more = continuedOutputs(encoded.outputs);
  const callKeys = [keys.engineLease, keys.output, keys.enginePublished];
  const head = [lease.value ?? "", throughInputId, String(lease.ttlMs), "0"];
  const headBytes = ["EVAL", FENCED_XADD, "3", ...callKeys, ...head].reduce(
    (n, a) => n + Buffer.byteLength(a) + ARG_FRAMING_BYTES,
    0,
  );
  // Split only when it must be: a batch that fits (nearly every one) is one call.
  const split = headBytes + encoded.bytes > PUBLISH_MAX_BYTES;
  let args = [...head];
  let bytes = headBytes;
  for (let i = 0; i < encoded.outputs.length; i++) {
    const type = encoded.outputs[i]!.type;
    const body = encoded.bodies[i]!;
    const size = encoded.sizes[i]!;
    if (split && args.length > head.length && bytes + size > PUBLISH_MAX_BYTES) {
      // Another part follows: out already means the whole batch is (only this lease's last call moves the cursor).
      if ((await publishCall(redis, callKeys, args, extended)) < 0) return;
      args = [...head];
      bytes = headBytes;
    }
    args.push(type, body, more.has(i) ? "1" : "");
    bytes += size;
  }
  args[3] = "1"; // ARGV[4]: the last call moves the cursor
  await publishCall(redis, callKeys, args, extended);
}

/** One fenced call: -1 when the batch was out already, else how many outputs it added. */
async function publishCall(
  redis: Redis,
  callKeys: readonly string[],
  args: readonly string[],
  extended: ((sentAt: number, sentAtMs: number) => void) | undefined,
): Promise<number> {
  const sentAt = performance.now();
  const sentAtMs = Date.now();
  let added: number;
  try {
    added = (await redis.eval(FENCED_XADD, callKeys.length, ...callKeys, ...args)) as number;
  } catch (err) {
    if (err instanceof Error && err.message.includes("FENCED")) throw new FencedError(err.message);
    throw err;
  }
  extended?.(sentAt, sentAtMs);
  return added;
}

function encode(outputs: readonly EngineOutput[]): EncodedOutputs {
  const encoded = new EncodedOutputs();
  for (const output of outputs) encoded.push(output);
  return encoded;
}
