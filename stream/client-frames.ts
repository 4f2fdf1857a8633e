/**
 * What a client may send (docs/stream.md, Client frames), validated with zod. A frame that does not parse or fit
 * gets an error frame naming the field, what was expected and what was received; the socket stays open.
 */
import { z } from "zod";
import { CANDLE_INTERVALS } from "../contract/candles.ts";
import { ASSET_BY_SYMBOL } from "../contract/markets.ts";

const asset = z
  .string()
  .max(32)
  .refine((s) => ASSET_BY_SYMBOL.has(s), 'expected a listed asset such as "BTC"');
const channels = [
  z.strictObject({ channel: z.literal("quotes"), assets: z.array(asset).min(1).max(64).optional() }),
  z.strictObject({ channel: z.literal("candles"), asset, interval: z.enum(CANDLE_INTERVALS) }),
  z.strictObject({
    channel: z.literal("private"),
    since: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  }),
] as const;

const subscription = z.discriminatedUnion("channel", channels);
export type Subscription = z.infer<typeof subscription>;

/**
 * A request's id, chosen by the client and echoed in the answer (subscribed, unsubscribed, pong, error). A number
 * beyond ±(2^53−1) is refused: JSON.parse rounded it (or made it Infinity, which JSON.stringify sends as null), so
 * its echo would not match what the client sent and the client could not tell which request was answered.
 */
const requestId = z.union([z.string().max(64), z.number().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER)]);
export type RequestId = z.infer<typeof requestId>;

const clientFrame = z.discriminatedUnion("op", [
  z.looseObject({ op: z.literal("subscribe"), id: requestId.optional() }),
  z.looseObject({ op: z.literal("unsubscribe"), id: requestId.optional() }),
  z.strictObject({ op: z.literal("ping"), id: requestId.optional() }),
]);

export type ClientFrame =
  | { op: "subscribe" | "unsubscribe"; subscription: Subscription; id: RequestId | undefined }
  | { op: "ping"; id?: RequestId | undefined };

export interface FrameProblem {
  readonly code: "MALFORMED_JSON" | "INVALID_FRAME";
  readonly message: string;
  readonly field?: string;
  /** The frame's id, when it has one that could be read, so the client knows which request was refused. */
  readonly id?: RequestId;
}

/** The frame as the server acts on it, or the problem to answer with. */
export function parseClientFrame(text: string): ClientFrame | FrameProblem {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (err) {
    return {
      code: "MALFORMED_JSON",
      field: "frame",
      // JSON.parse's words give the position where the text stops being JSON, when they can.
      message: `frame: expected one JSON object, received text that is not JSON (${(err as Error).message}): ${excerpt(JSON.stringify(text))}.`,
    };
  }
  const head = clientFrame.safeParse(input);
  if (!head.success) return problem(head.error.issues, input, false);
  if (head.data.op === "ping") return head.data;
  const { op, id, ...rest } = head.data as { op: "subscribe" | "unsubscribe"; id?: RequestId } & Record<
    string,
    unknown
  >;
  const sub = subscription.safeParse(rest);
  if (!sub.success) return problem(sub.error.issues, input, true);
  return { op, subscription: sub.data, id };
}

/** `subscription`: the issues are the subscription's (a subscribe or unsubscribe frame), not the frame's head. */
function problem(issues: readonly z.core.$ZodIssue[], input: unknown, subscription: boolean): FrameProblem {
  // An unknown field first: it often explains the rest (`assets` on the candles channel leaves `asset` missing).
  const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0]!;
  const id = requestId.safeParse(valueAt(input, ["id"]));
  const echo = id.success ? { id: id.data } : {};
  if (issue.code === "unrecognized_keys") {
    const field = issue.keys.join(", ");
    return {
      code: "INVALID_FRAME",
      field,
      message: `${field}: expected no such field${subscription ? takes(input) : ""}, received ${received(valueAt(input, [issue.keys[0]!]))}.`,
      ...echo,
    };
  }
  const field = issue.path.map(String).join(".") || "frame";
  return {
    code: "INVALID_FRAME",
    field,
    message: `${field}: expected ${expected(issue)}, received ${received(valueAt(input, issue.path))}.`,
    ...echo,
  };
}

/**
 * What a subscription's channel takes beside `op`, `channel` and `id`, for a field it does not take: candles take
 * `asset` and quotes `assets`, a natural slip.
 */
const CHANNEL_FIELDS: Readonly<Record<Subscription["channel"], string>> = {
  quotes: 'assets (an array such as ["ETH", "BTC"], or none for every asset)',
  candles: "asset and interval",
  private: "since (or none)",
};

/**
 * " on the quotes channel, which takes assets (…)" for a subscribe or unsubscribe frame's channel; "" for a channel
 * that is not one. A ping takes no channel: its `channel` is a field it does not take, not one to describe.
 */
function takes(input: unknown): string {
  const channel = valueAt(input, ["channel"]);
  if (typeof channel !== "string" || !Object.hasOwn(CHANNEL_FIELDS, channel)) return "";
  return ` on the ${channel} channel, which takes ${CHANNEL_FIELDS[channel as Subscription["channel"]]}`;
}

/** Where zod's own wording (a union's) would be vague. */
const FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  op: 'one of "subscribe", "unsubscribe", "ping"',
  channel: 'one of "quotes", "candles", "private"',
  id: `a string of at most 64 characters or a number within ±${Number.MAX_SAFE_INTEGER}`,
};

/** zod's type names as a message says them. */
const TYPE_NAMES: Readonly<Record<string, string>> = { object: "a JSON object", int: "a whole number" };

function expected(issue: z.core.$ZodIssue): string {
  const forField = FIELD_EXPECTATIONS[issue.path.map(String).join(".")];
  if (forField !== undefined) return forField;
  if (issue.message.startsWith("expected ")) return issue.message.slice("expected ".length);
  switch (issue.code) {
    case "invalid_type":
      return TYPE_NAMES[issue.expected] ?? `${/^[aeiou]/.test(issue.expected) ? "an" : "a"} ${issue.expected}`;
    case "invalid_value":
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_big":
      return `at most ${String(issue.maximum)}${issue.origin === "array" ? " items" : issue.origin === "string" ? " characters" : ""}`;
    case "too_small":
      return `at least ${String(issue.minimum)}${issue.origin === "array" ? " item" : ""}`;
    default:
      return issue.message;
  }
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** What came, shortened: a client's frame is never echoed whole. */
function received(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  // A number JSON.parse could not read exactly: it rounded it to the nearest double, or past the largest to
  // Infinity, and the text sent is gone (Node 20's reviver has no source). Showing the value read alone would
  // misquote the client ("received 9007199254740992" for ...993).
  if (typeof value === "number" && !Number.isFinite(value)) return "a number too large to read";
  if (typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value))
    return `a number beyond ±${Number.MAX_SAFE_INTEGER}, past which whole numbers are not read exactly (read as ${value})`;
  const text = JSON.stringify(value) ?? typeof value;
  const kind = Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`;
  return `${kind} ${excerpt(text)}`;
}

/** At most 60 characters of what was received. */
function excerpt(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
