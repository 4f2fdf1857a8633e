/**
 * Encoding of messages to and from Redis stream entry fields: `type <message type> body <JSON>`; on engine:output,
 * `more 1` after them on a private event that its engine step follows with another event for the same user.
 * Decoding validates against the contract and returns a reason instead of throwing, so a consumer can log and
 * skip (or answer) a bad entry without ever half-applying it.
 */
import type { z } from "zod";
import {
  engineInputSchema,
  engineOutputSchema,
  isPrivateOutput,
  isPrivateOutputType,
  requestIdSchema,
  userIdSchema,
  type EngineInput,
  type EngineOutput,
} from "./messages.ts";

export type Decoded<T> = { readonly ok: true; readonly message: T } | { readonly ok: false; readonly reason: string };

export function encodeFields(message: EngineInput | EngineOutput): [string, string, string, string] {
  return ["type", message.type, "body", JSON.stringify(message)];
}

/**
 * The engine:output entries of whole engine steps (the outputs of each input, together), as the engine publishes
 * them. An event followed in its step (same input id) by another event for the same user gets `more 1`: its
 * consumers then know a user's change is not complete yet (a trade opened, its margin not yet paid), wherever a read
 * happens to end.
 */
export function outputEntries(outputs: readonly EngineOutput[]): string[][] {
  const more = continuedOutputs(outputs);
  return outputs.map((output, i) => (more.has(i) ? [...encodeFields(output), "more", "1"] : encodeFields(output)));
}

/** The indexes in `outputs` (whole engine steps) of the events whose entries get `more 1` (outputEntries). */
export function continuedOutputs(outputs: readonly EngineOutput[]): ReadonlySet<number> {
  // Backwards: per user, the input of the next event; an event of the same input has more.
  const more = new Set<number>();
  const nextInput = new Map<string, string>();
  for (let i = outputs.length - 1; i >= 0; i--) {
    const output = outputs[i]!;
    if (!isPrivateOutput(output)) continue;
    if (nextInput.get(output.userId) === output.inputId) more.add(i);
    nextInput.set(output.userId, output.inputId);
  }
  return more;
}

/** The entry says its step has another event for the same user after this one (outputEntries). */
export function stepContinues(fields: readonly string[]): boolean {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "more") return fields[i + 1] === "1";
  return false;
}

export function decodeInputFields(fields: readonly string[]): Decoded<EngineInput> {
  return decodeWith(engineInputSchema, fields);
}

export function decodeOutputFields(fields: readonly string[]): Decoded<EngineOutput> {
  return decodeWith(engineOutputSchema, fields);
}

function decodeWith<T>(schema: z.ZodType<T>, fields: readonly string[]): Decoded<T> {
  let type: string | undefined;
  let body: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === "type") type = fields[i + 1];
    else if (fields[i] === "body") body = fields[i + 1];
  }
  if (body === undefined) return { ok: false, reason: "entry has no body field" };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { ok: false, reason: "body is not valid JSON" };
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    return { ok: false, reason: `invalid message: ${where}${issue?.message ?? "unknown"}` };
  }
  const message = parsed.data as { type?: unknown };
  if (type !== undefined && message.type !== type) return { ok: false, reason: "type field does not match body" };
  return { ok: true, message: parsed.data };
}

/**
 * The user and seq an engine:output entry that failed to decode still names, when it says it is a private output
 * (by its `type` field, else its body's) and its body holds a valid `userId` and a whole `seq` ≥ 1; else undefined,
 * and `private` says only whether its type is a private output's.
 */
export function privateEventOf(fields: readonly string[]): { private: boolean; userId?: string; seq?: number } {
  const body = bodyOf(fields) as { type?: unknown; userId?: unknown; seq?: unknown } | undefined;
  let type: unknown = body?.type;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "type") type = fields[i + 1];
  if (!isPrivateOutputType(type)) return { private: false };
  const user = userIdSchema.safeParse(body?.userId);
  const seq = body?.seq;
  if (!user.success || typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) return { private: true };
  return { private: true, userId: user.data, seq };
}

/** An entry's body as parsed JSON, when it has one that is an object. */
function bodyOf(fields: readonly string[]): object | undefined {
  const at = fields.indexOf("body");
  if (at < 0 || at % 2 !== 0) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(fields[at + 1] ?? "");
  } catch {
    return undefined;
  }
  return typeof body === "object" && body !== null ? body : undefined;
}

/**
 * Who sent an entry that failed to decode, when its body still names a valid user and request id: that sender
 * can then be answered (INVALID_INSTRUCTION) instead of waiting for a timeout.
 */
export function senderOf(fields: readonly string[]): { userId: string; requestId: string } | undefined {
  const body = bodyOf(fields);
  if (body === undefined) return undefined;
  const { userId, requestId } = body as { userId?: unknown; requestId?: unknown };
  const user = userIdSchema.safeParse(userId);
  const request = requestIdSchema.safeParse(requestId);
  return user.success && request.success ? { userId: user.data, requestId: request.data } : undefined;
}
