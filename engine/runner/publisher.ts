/**
 * Publishing engine outputs: one atomic Lua call per batch that first checks the lease still holds this
 * engine's fencing value, then XADDs every output in order, records the batch's last input id as published and
 * extends the lease (so a busy leader renews with every batch, not only on its timer).
 * A fenced-off engine gets an error and writes nothing. Output ids are in the bodies (`<input id>:<n>`), so
 * consumers drop what a replay re-emits. A batch holds whole steps, so each event's `more` (outputEntries) is
 * exact. Snapshots never go past the published id: a restart from one must re-emit every output that was not yet
 * out.
 */
import type { Redis } from "ioredis";
import type { EngineOutput } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { outputEntries } from "../../contract/stream-fields.ts";

const FENCED_XADD = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED engine lease lost') end
for i = 4, #ARGV, 3 do
  if ARGV[i + 2] == '1' then redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1], 'more', '1')
  else redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1]) end
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return (#ARGV - 3) / 3`;

export class FencedError extends Error {}

/**
 * Publishes a batch's outputs (possibly none) and marks `throughInputId` published, if the lease is ours; the lease
 * then lives `leaseTtlMs` from now.
 */
export async function publishOutputs(
  redis: Redis,
  keys: Keyspace,
  lease: { readonly value: string | undefined; readonly ttlMs: number },
  throughInputId: string,
  outputs: readonly EngineOutput[],
): Promise<void> {
  const args: string[] = [lease.value ?? "", throughInputId, String(lease.ttlMs)];
  for (const [, type, , body, , more] of outputEntries(outputs)) args.push(type!, body!, more ?? "");
  try {
    await redis.eval(FENCED_XADD, 3, keys.engineLease, keys.output, keys.enginePublished, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.includes("FENCED")) throw new FencedError(err.message);
    throw err;
  }
}
