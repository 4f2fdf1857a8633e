/**
 * A batch's outputs as the worker writes them to Redis: per engine step (the outputs of one input), each user's events
 * of that step together, so that one script applies them (read-models.ts, USER_STEP) and no read model shows a state
 * from the middle of a step (a trade open whose margin is not yet paid, a trade closed whose proceeds are not yet in).
 *
 * A group read ends wherever its COUNT does, and workers read neighbouring ranges (a rolling deploy runs two; a claim
 * takes a dead worker's pending entries, which need not be contiguous), so a batch may hold only part of a user's step.
 * The rest is on engine:output still: nothing is trimmed before every group acknowledged it and WORKER_OUTPUT_KEEP_MS
 * (an hour) passed, nor anything after an entry still pending (a batch's until it is written). So the batch reads it
 * there, with XRANGE and XREVRANGE (not the group's reads, which give each entry to one consumer only):
 * - the step's earlier outputs, when some user's first output of the step in the batch (an event, or the answer, which
 *   comes after its events) has an earlier output of the step that the batch lacks: output `<input id>:k` has the k
 *   outputs before it right before its entry, since one leader publishes a step's outputs in order;
 * - a user's later events, when the last the batch has says `more` (the engine marks each event its step follows with
 *   another for the same user), or the user's seqs in the step have a hole (a claimed range): read on from there until
 *   the user's event without `more`.
 * Whichever worker holds a part of the step writes the user's step whole; the others write it again, which changes
 * nothing (every write is idempotent). Only those users' events are taken from around the batch: another user's are
 * written whole by the batch that holds them. The reads cost nothing when no step is cut, a round trip or two when the
 * first or last is (the reads of a batch's steps run together), and at most the step's length: a batch deep inside a
 * price that fires thousands of stops reads back to its start.
 *
 * A step whose end is not on the stream yet (a publish in several calls still under way, or a leader that stopped
 * between two: the next one publishes the whole batch again) has that user's part left out: the batch that holds the
 * step's end reads back to its start and writes it whole. Its entries are acknowledged all the same.
 */
import type { Redis } from "ioredis";
import { isPrivateOutput, type EngineOutput, type OutputOf, type PrivateOutput } from "../contract/messages.ts";
import type { Keyspace } from "../contract/names.ts";
import { decodeOutputFields, stepContinues } from "../contract/stream-fields.ts";
import { isAfterId } from "../engine/core/step.ts";
import type { Logger } from "../platform/log.ts";

/** An output of a batch, with its engine:output entry's id and whether that entry said `more 1`. */
export interface Located {
  readonly output: EngineOutput;
  readonly entryId: string;
  readonly more: boolean;
}

/** One engine step's writes: each user's events of it (by seq), one script each, then its quotes. */
export interface StepWrites {
  readonly userSteps: readonly (readonly PrivateOutput[])[];
  readonly quotes: readonly OutputOf<"quote_updated">[];
}

export interface UserSteps {
  /** In the batch's order of steps. */
  readonly steps: readonly StepWrites[];
  /** The events in `steps` whose entries said `more 1`. */
  readonly continued: ReadonlySet<EngineOutput>;
  /** The batch's events left out of `steps`: their user's step has no end on the stream yet. */
  readonly leftOut: ReadonlySet<EngineOutput>;
}

/** Entries per XRANGE / XREVRANGE that looks for the rest of a step. */
const STEP_READ_COUNT = 500;

/** A user's part of one step: its events found so far (by output id), and its first output in the batch. */
interface UserPart {
  readonly events: Map<string, Located>;
  first: Located;
}

interface StepPart {
  readonly inputId: string;
  /** The output numbers (`<input id>:n`) the batch holds. */
  readonly held: Set<number>;
  readonly users: Map<string, UserPart>;
  readonly quotes: OutputOf<"quote_updated">[];
  /** An output of a later input was read after the step: all of the step is on the stream. */
  ended: boolean;
}

/** Groups a batch's outputs (in stream order) into steps and user steps, reading from engine:output what they lack. */
export async function gatherUserSteps(
  redis: Redis,
  keys: Keyspace,
  batch: readonly Located[],
  log: Logger,
): Promise<UserSteps> {
  const steps = new Map<string, StepPart>();
  const seen = new Set<string>();
  for (const item of batch) {
    const { output } = item;
    if (seen.has(output.id)) continue; // a replayed copy in the same batch
    seen.add(output.id);
    let step = steps.get(output.inputId);
    if (step === undefined) {
      step = { inputId: output.inputId, held: new Set(), users: new Map(), quotes: [], ended: false };
      steps.set(output.inputId, step);
    }
    step.held.add(outputNumber(output));
    if (output.type === "quote_updated") {
      step.quotes.push(output);
      continue;
    }
    const user = step.users.get(output.userId);
    if (user === undefined) step.users.set(output.userId, { events: new Map(), first: item });
    else if (outputNumber(output) < outputNumber(user.first.output)) user.first = item;
    if (isPrivateOutput(output)) step.users.get(output.userId)!.events.set(output.id, item);
  }
  const leftOut = new Set<EngineOutput>();
  const continued = new Set<EngineOutput>();
  await Promise.all([...steps.values()].map((step) => completeStep(redis, keys, step, log)));
  const writes = [...steps.values()].map((step): StepWrites => {
    const userSteps: PrivateOutput[][] = [];
    for (const [userId, user] of step.users) {
      const events = bySeq(user);
      if (events.length === 0) continue;
      if (events.at(-1)!.more && !step.ended) {
        log.info("user_step_left_out", { userId, inputId: step.inputId });
        for (const { output } of events) leftOut.add(output);
        continue;
      }
      // The stream lacks some of it (trimmed, or a step never finished): what there is, rather than nothing.
      if (events.at(-1)!.more || !seqsContiguous(events))
        log.warn("user_step_incomplete", { userId, inputId: step.inputId });
      for (const { output, more } of events) if (more) continued.add(output);
      userSteps.push(events.map(({ output }) => output as PrivateOutput));
    }
    return { userSteps, quotes: step.quotes };
  });
  return { steps: writes, continued, leftOut };
}

/** Adds to `step`'s users the events of theirs that the batch lacks, read from engine:output. */
async function completeStep(redis: Redis, keys: Keyspace, step: StepPart, log: Logger): Promise<void> {
  let lacking = 0; // the first output number of the step the batch lacks
  while (step.held.has(lacking)) lacking++;
  let back: Located | undefined;
  for (const user of step.users.values()) {
    const n = outputNumber(user.first.output);
    if (n > lacking && (back === undefined || n > outputNumber(back.output))) back = user.first;
  }
  if (back !== undefined) await readBack(redis, keys, step, back, log);
  let from: string | undefined;
  for (const user of step.users.values()) {
    const after = lastBeforeMissing(bySeq(user));
    if (after !== undefined && (from === undefined || isAfterId(from, after))) from = after;
  }
  if (from !== undefined) await readOn(redis, keys, step, from);
}

/** Takes the `outputNumber(from)` entries before `from`: the step's outputs before it. */
async function readBack(redis: Redis, keys: Keyspace, step: StepPart, from: Located, log: Logger): Promise<void> {
  let left = outputNumber(from.output);
  let cursor = from.entryId;
  while (left > 0) {
    const entries = (await redis.xrevrange(
      keys.output,
      `(${cursor}`,
      "-",
      "COUNT",
      Math.min(left, STEP_READ_COUNT),
    )) as [string, string[]][];
    for (const [entryId, fields] of entries) {
      const inputId = take(step, entryId, fields);
      if (inputId !== undefined && inputId !== step.inputId) return; // the step's start is behind
    }
    if (entries.length === 0) break;
    left -= entries.length;
    cursor = entries.at(-1)![0];
  }
  // Fewer than the step's earlier outputs: trimmed, so acknowledged by the batch that held them, which wrote them.
  if (left > 0) log.warn("step_start_trimmed", { inputId: step.inputId, missing: left });
}

/**
 * Reads on after `from` until every user of `step` has its events up to one without `more`, the stream ends, or an
 * output of a later input comes: the step is all before it (a leader publishes inputs in order, and one that takes
 * over publishes again from the first input not wholly out). Before that, past the step's end, may come a copy of it:
 * a leader stopped mid-publish, and the next one published the batch again.
 */
async function readOn(redis: Redis, keys: Keyspace, step: StepPart, from: string): Promise<void> {
  let cursor = from;
  for (;;) {
    const entries = (await redis.xrange(keys.output, `(${cursor}`, "+", "COUNT", STEP_READ_COUNT)) as [
      string,
      string[],
    ][];
    for (const [entryId, fields] of entries) {
      const inputId = take(step, entryId, fields);
      if (inputId !== undefined && isAfterId(inputId, step.inputId)) {
        step.ended = true;
        return;
      }
    }
    if ([...step.users.values()].every((user) => lastBeforeMissing(bySeq(user)) === undefined)) return;
    if (entries.length < STEP_READ_COUNT) return;
    cursor = entries.at(-1)![0];
  }
}

/**
 * Adds an entry's event to its user's part of `step` if the entry is of that step and the user has a part; returns
 * the entry's input id. An entry that does not decode is for the batch that holds it to report.
 */
function take(step: StepPart, entryId: string, fields: string[]): string | undefined {
  const decoded = decodeOutputFields(fields);
  if (!decoded.ok) return undefined;
  const output = decoded.message;
  if (output.inputId !== step.inputId) return output.inputId;
  const user = isPrivateOutput(output) ? step.users.get(output.userId) : undefined;
  if (user !== undefined && !user.events.has(output.id))
    user.events.set(output.id, { output, entryId, more: stepContinues(fields) });
  return output.inputId;
}

/** The entry id after which `events` (by seq) lack one: before a hole in their seqs, or after a last with `more`. */
function lastBeforeMissing(events: readonly Located[]): string | undefined {
  for (let i = 0; i + 1 < events.length; i++) {
    if (seqOf(events[i + 1]!) !== seqOf(events[i]!) + 1) return events[i]!.entryId;
  }
  const last = events.at(-1);
  return last?.more === true ? last.entryId : undefined;
}

function seqsContiguous(events: readonly Located[]): boolean {
  return events.every((event, i) => i === 0 || seqOf(event) === seqOf(events[i - 1]!) + 1);
}

function bySeq(user: UserPart): Located[] {
  return [...user.events.values()].sort((a, b) => seqOf(a) - seqOf(b));
}

function seqOf(event: Located): number {
  return (event.output as PrivateOutput).seq;
}

/** n of output id `<input id>:n`: the output's place in its step. */
function outputNumber(output: EngineOutput): number {
  return Number(output.id.slice(output.inputId.length + 1));
}
