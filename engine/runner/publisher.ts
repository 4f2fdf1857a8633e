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
 */
import type { Redis } from "ioredis";
import type { EngineOutput } from "../../contract/messages.ts";
import type { Keyspace } from "../../contract/names.ts";
import { outputEntries } from "../../contract/stream-fields.ts";

/**
 * KEYS[1] the lease, KEYS[2] the output stream, KEYS[3] the published cursor; ARGV[1] the lease value, ARGV[2] the
 * batch's last input id, ARGV[3] the lease TTL, then type, body and more of each output. Ids compare as numbers, ms
 * then seq (a 13-digit ms is exact in a Lua double; as strings "999-0" would sort after "1000-0").
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
    return 0
  end
end
for i = 4, #ARGV, 3 do
  if ARGV[i + 2] == '1' then redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1], 'more', '1')
  else redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'body', ARGV[i + 1]) end
end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return (#ARGV - 3) / 3`;

export class FencedError extends Error {}

/**
 * Publishes a batch's outputs (possibly none) and marks `throughInputId` published, if the lease is ours and the
 * published cursor is before `throughInputId` (else it publishes nothing); the lease then lives `ttlMs` from now.
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
