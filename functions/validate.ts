/**
 * Reading a request's body and query through the contract's schemas (schemas.ts). A failure throws an ApiError
 * whose code says which kind of input was wrong and whose message names the field, so a client can fix its request
 * without reading the source.
 *
 * Bodies are limited to BODY_LIMIT_BYTES (413). With a Content-Length the limit is checked before reading, and the
 * body is read through the Node server's direct path (building a Web stream per request is a large share of the
 * API's CPU per order); without one, the stream is read and cut off at the limit.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { leverageExpected, type RejectionCode } from "../contract/rejections.ts";
import { ApiError, type ApiErrorCode } from "./errors.ts";
import { JsonNumber, MAX_BODY_DEPTH, nestsTooDeep, parseJsonBody, syntaxProblem } from "./json-body.ts";
import { misdirectedBodyHint, misdirectedIdNote } from "./misdirected.ts";
import { AMOUNT_EXPECTED, fieldErrorCode } from "./schemas.ts";

export const BODY_LIMIT_BYTES = 16 * 1024;

/** The 413's message: the limit, and the size sent when a Content-Length gave it (a stream is cut at the limit). */
export function tooLargeMessage(receivedBytes?: number): string {
  const limit = `The body is over the limit of ${grouped(BODY_LIMIT_BYTES)} bytes (${BODY_LIMIT_BYTES / 1024} KiB)`;
  return receivedBytes === undefined ? `${limit}.` : `${limit}; received ${grouped(receivedBytes)} bytes.`;
}

export const TOO_DEEP_MESSAGE = `The body is nested too deeply: at most ${MAX_BODY_DEPTH} levels of arrays and objects are read.`;

/** 16384 → "16,384". */
function grouped(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+$)/g, ",");
}

/** A body read through its schema: `value` as the schema leaves it, `sent` as parsed before it (FieldRefusal). */
export interface ReadBody<S extends z.ZodType> {
  readonly value: z.output<S>;
  readonly sent: unknown;
}

export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<ReadBody<S>> {
  checkMediaType(c);
  return parsed(schema, await readBody(c));
}

/**
 * A body the client may leave out (a request with no fields to send): none, or an empty one, is read as `{}`, with
 * any Content-Type; one that is sent is JSON, read as readJson reads it, so a field the schema does not take is a
 * 400 naming it, as on every other endpoint.
 */
export async function readOptionalJson<S extends z.ZodType>(c: Context, schema: S): Promise<ReadBody<S>> {
  const text = c.req.raw.body === null ? "" : await readBody(c);
  if (text === "") return { value: check(schema, {}, "body"), sent: {} };
  checkMediaType(c);
  return parsed(schema, text);
}

/** A Content-Type's charset parameter: its value quoted (1) or a token (2). */
const CHARSET_PARAMETER = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/gi;
const CHARSET_EXPECTED = "Send JSON in UTF-8 (Content-Type: application/json, with charset=utf-8 or no charset)";
/** UTF-8's labels in the WHATWG Encoding Standard, which browsers take (lower case; `utf8` among them). */
const UTF8_LABELS: ReadonlySet<string> = new Set([
  "utf-8",
  "utf8",
  "unicode-1-1-utf-8",
  "unicode11utf8",
  "unicode20utf8",
  "x-unicode20utf8",
]);

/**
 * The body must be sent as JSON, in UTF-8: JSON exchanged between systems is UTF-8 (RFC 8259 §8.1), and the body is
 * decoded as UTF-8. A charset parameter (RFC 9110 §8.3: name case-insensitive, value a token or a quoted string) is
 * taken when it says UTF-8 (by any of UTF-8's labels); one that names another is refused rather than its body misread (a Latin-1 "é" would read
 * as a replacement character, a UTF-16 body as malformed JSON).
 */
function checkMediaType(c: Context): void {
  const type = c.req.header("content-type") ?? "";
  const sent = () => (type === "" ? "no Content-Type" : `Content-Type ${received(type, false)}`);
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `Send JSON (Content-Type: application/json); received ${sent()}.`);
  const charsets = [...type.matchAll(CHARSET_PARAMETER)].map((m) => m[1] ?? m[2] ?? "");
  const other = charsets.find((charset) => !UTF8_LABELS.has(charset.toLowerCase()));
  // The charset named apart: a long Content-Type is cut in the answer, maybe before it.
  if (other !== undefined)
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `${CHARSET_EXPECTED}; received charset ${quoted(other)} (${sent()}).`);
}

function parsed<S extends z.ZodType>(schema: S, text: string): ReadBody<S> {
  const body = parseJsonBody(text);
  if (body === undefined) {
    throw new ApiError(
      "MALFORMED_JSON",
      nestsTooDeep(text) ? TOO_DEEP_MESSAGE : `The body is not valid JSON: ${syntaxProblem(text)}.`,
    );
  }
  return { value: check(schema, body, "body"), sent: body };
}

/**
 * The body as text. When the client hangs up before its body is complete (or the server's request timeout cuts it
 * off), Node fails the read with an ECONNRESET "aborted" error: that is the client's doing, not a backing service
 * failing, so it becomes INCOMPLETE_BODY (the app logs it at debug level), never a 503 with an error logged.
 */
async function readBody(c: Context): Promise<string> {
  try {
    return await readBodyText(c);
  } catch (err) {
    if (err instanceof ApiError || !c.req.raw.signal.aborted) throw err;
    throw new ApiError("INCOMPLETE_BODY");
  }
}

async function readBodyText(c: Context): Promise<string> {
  const length = c.req.header("content-length");
  if (length !== undefined && c.req.header("transfer-encoding") === undefined) {
    if (!/^\d{1,10}$/.test(length))
      throw new ApiError("INVALID_REQUEST", fieldProblem("Content-Length", "a whole number", length, false));
    if (Number(length) > BODY_LIMIT_BYTES) throw new ApiError("PAYLOAD_TOO_LARGE", tooLargeMessage(Number(length)));
    return c.req.text();
  }
  const stream = c.req.raw.body;
  if (stream === null) return "";
  const reader: ReadableStreamDefaultReader<Uint8Array> = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > BODY_LIMIT_BYTES) {
      await reader.cancel();
      throw new ApiError("PAYLOAD_TOO_LARGE", tooLargeMessage());
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const url = new URL(c.req.url);
  // No prototype: "__proto__" or "constructor" is a key like any other (and so an unknown parameter).
  const query: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [k, v] of url.searchParams) {
    if (Object.hasOwn(query, k)) {
      const name = received(k, false);
      throw new ApiError("INVALID_REQUEST", `Query parameter ${name}: expected one value, received more than one.`);
    }
    query[k] = v;
  }
  return check(schema, query, "query");
}

function check<S extends z.ZodType>(schema: S, input: unknown, where: "body" | "query"): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = markedFirst(numbersForObjects(unwrapOrNull(parsed.error.issues), input));
  const first = issues[0]!;
  // A field's own code (UNKNOWN_ASSET, INVALID_AMOUNT) is for a value of the right JSON type that it refused; a
  // missing field, or one of the wrong type (`"asset": 5`, `"margin": true`), is INVALID_REQUEST (docs/api.md).
  const value = valueAt(input, first.path);
  const own: unknown = first.code === "custom" ? first.params?.["code"] : undefined;
  const code =
    value === undefined || isWrongType(first, value)
      ? undefined
      : ((own as ApiErrorCode | RejectionCode | undefined) ?? fieldErrorCode(first.path));
  const message = describeIssues(toldOrder(issues, code), input, where, schema);
  // A body that another trade endpoint takes: that endpoint, after the problems (misdirected.ts).
  const hint = where === "body" ? misdirectedBodyHint(schema, input) : undefined;
  throw new ApiError(code ?? "INVALID_REQUEST", hint === undefined ? message : `${message} ${hint}`);
}

/**
 * The issues a schema marks to be told first (params.first: a trailing stop on an entry order, schemas.ts) ahead of
 * the rest, which keep their order: the code and the answer are theirs whatever else is wrong, a missing field or
 * the other leg of a pair included. Not within an array of the wrong length (an OCO request with three legs): zod
 * tells its length first and checks only some of its items (two of three legs, none of one), so the answer is the
 * length's, whichever item holds what.
 */
function markedFirst(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  const wrongLength = issues
    .filter((issue) => (issue.code === "too_big" || issue.code === "too_small") && issue.origin === "array")
    .map((issue) => issue.path);
  const inWrongLength = (path: readonly PropertyKey[]) =>
    wrongLength.some((at) => at.length < path.length && at.every((key, i) => key === path[i]));
  const first = (issue: z.core.$ZodIssue) =>
    issue.code === "custom" && issue.params?.["first"] === true && !inWrongLength(issue.path);
  return [...issues.filter(first), ...issues.filter((issue) => !first(issue))];
}

/**
 * The issues in the order they are told: the one the code is for first, then unknown fields, then the rest. An
 * unknown field often explains the others (a body wrapped as `{"trade": {…}}` misses every field it holds), so it is
 * not left among those only counted past MAX_DESCRIBED. It is INVALID_REQUEST's: under that code, it leads.
 */
function toldOrder(
  issues: readonly z.core.$ZodIssue[],
  code: ApiErrorCode | RejectionCode | undefined,
): z.core.$ZodIssue[] {
  const unknown = issues.filter((issue) => issue.code === "unrecognized_keys");
  if (unknown.length === 0) return [...issues];
  const lead = code === undefined || code === "INVALID_REQUEST" ? [] : [issues[0]!];
  const rest = issues.filter((issue) => issue.code !== "unrecognized_keys" && !lead.includes(issue));
  return [...lead, ...unknown, ...rest];
}

/**
 * A field declared `orNull(schema)` (schemas.ts) is a union with null, so a wrong value under it fails as one
 * invalid_union issue at the field: the issues of its other branch, at their own paths, are what is wrong with it
 * (`trailingStop.distance`, not `trailingStop`), as they were before the union.
 */
function unwrapOrNull(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  return issues.flatMap((issue) => {
    if (issue.code !== "invalid_union") return [issue];
    const isNullBranch = (branch: readonly z.core.$ZodIssue[]) =>
      branch.length === 1 && branch[0]!.code === "invalid_type" && branch[0].expected === "null";
    const others = issue.errors.filter((branch) => !isNullBranch(branch));
    if (others.length !== 1 || others.length === issue.errors.length) return [issue];
    return unwrapOrNull(others[0]!.map((sub) => ({ ...sub, path: [...issue.path, ...sub.path] })));
  });
}

/**
 * A JSON number where an object belongs. json-body.ts hands numbers over as JsonNumber instances, which zod's object
 * check takes for objects with one unknown key, `text`: the issues about that "object" (the unknown key, its missing
 * fields, its refinements) become one wrong-type issue at the number.
 */
function numbersForObjects(issues: readonly z.core.$ZodIssue[], input: unknown): z.core.$ZodIssue[] {
  const numbers = issues
    .filter((issue) => issue.code === "unrecognized_keys" && valueAt(input, issue.path) instanceof JsonNumber)
    .map((issue) => issue.path);
  if (numbers.length === 0) return [...issues];
  const within = (path: readonly PropertyKey[]) =>
    numbers.find((at) => at.length <= path.length && at.every((key, i) => key === path[i]));
  const result: z.core.$ZodIssue[] = [];
  const replaced = new Set<readonly PropertyKey[]>();
  for (const issue of issues) {
    const at = within(issue.path);
    if (at === undefined) result.push(issue);
    else if (!replaced.has(at)) {
      replaced.add(at);
      result.push({ code: "invalid_type", expected: "object", path: [...at], message: "expected a JSON object" });
    }
  }
  return result;
}

/** At most this many problems are spelt out in one answer; the rest are counted. */
const MAX_DESCRIBED = 3;

/**
 * One plain message for a failed validation: each problem names the field, what was expected and what was received,
 * e.g. `limit: expected a whole number from 1 to 100, received "1000".`, or `received nothing.` for a missing field.
 * In the issues' order: the first is the one the error code is for, then unknown fields (check, toldOrder). An
 * unknown field is named with the fields the request does take. `schema` is the one that refused `input`.
 */
export function describeIssues(
  issues: readonly z.core.$ZodIssue[],
  input: unknown,
  where: "body" | "query",
  schema?: z.ZodType,
): string {
  const fields = schema === undefined ? undefined : fieldsOf(schema);
  const problems: string[] = [];
  const told = new Set<string>(); // one problem per field: a value too long and malformed is one mistake
  for (const issue of issues) {
    const field = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      problems.push(unknownKeys(issue.keys, where, fields));
      continue;
    }
    if (told.has(field)) continue;
    told.add(field);
    const pair: unknown = issue.code === "custom" ? issue.params?.["oneOf"] : undefined;
    if (Array.isArray(pair)) {
      problems.push(oneOfProblem(issue, field, pair as string[], input));
      continue;
    }
    const value = valueAt(input, issue.path);
    if (value === undefined && field !== "")
      problems.push(fieldProblem(field, missingExpected(issue, field, input, schema), value, false));
    else {
      // What is wrong beyond the expectation, where the value alone does not show it (an amount out of range).
      const note: unknown = issue.code === "custom" ? issue.params?.["note"] : undefined;
      const why = typeof note === "string" ? note : misdirectedIdNote(field, value);
      problems.push(fieldProblem(field || where, expected(issue, field), value, isWrongType(issue, value), why));
    }
  }
  const described = problems.slice(0, MAX_DESCRIBED).join(" ");
  const more = problems.length - MAX_DESCRIBED;
  return more > 0 ? `${described} (${more} more problem${more === 1 ? "" : "s"}.)` : described;
}

/**
 * What a missing field expects, in the words a wrong value of it gets. zod reports a missing field as undefined of
 * the wrong type, which names only the type ("a string") where the field has rules of its own ("a trade id such as
 * T0-42"): the same request with an empty string there is told them. A field that takes no text is told about ""
 * what it is told about any value of the wrong type, as when it is missing.
 */
function missingExpected(issue: z.core.$ZodIssue, field: string, input: unknown, schema?: z.ZodType): string {
  const probe = schema?.safeParse(withValueAt(input, issue.path, ""));
  const sameField = (other: z.core.$ZodIssue) => other.path.map(String).join(".") === field;
  const told = probe?.success === false ? unwrapOrNull(probe.error.issues).find(sameField) : undefined;
  return expected(told ?? issue, field);
}

/** `input` with `value` at `path`; the objects on the way are copied, so the input stays as the client sent it. */
function withValueAt(input: unknown, path: readonly PropertyKey[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [key, ...rest] = path as [PropertyKey, ...PropertyKey[]];
  const copy = Array.isArray(input) ? [...(input as unknown[])] : { ...(input as object) };
  (copy as Record<PropertyKey, unknown>)[key] = withValueAt(valueAt(input, [key]), rest, value);
  return copy;
}

/**
 * Whether the value was of the wrong JSON type: the answer is then INVALID_REQUEST and says which type came
 * ("received the string "5""). A class check (schemas.ts `jsonNumber`) reports it as a custom issue with
 * `wrongType`: the OpenAPI extension rebuilds schemas from their definition, which turns zod's own invalid_type for
 * `instanceof` into a custom issue. A union (an amount: a string or a number) is of the wrong type when every
 * branch refused the type, and an enum of strings when the value is not a string.
 */
function isWrongType(issue: z.core.$ZodIssue, value: unknown): boolean {
  switch (issue.code) {
    case "invalid_type":
      return true;
    case "custom":
      return issue.params?.["wrongType"] === true;
    case "invalid_union":
      return issue.errors.every(
        (branch) => branch.length > 0 && branch.every((sub) => sub.path.length === 0 && isWrongType(sub, value)),
      );
    case "invalid_value":
      return issue.values.every((v) => typeof v === "string") && typeof value !== "string";
    default:
      return false;
  }
}

/**
 * Fields of which one may be given, not both (schemas.ts `oneOf`): the answer names both and what came for each,
 * e.g. `quantity and percent: expected quantity or percent, not both, received quantity "0.1" and percent "10".`
 */
function oneOfProblem(issue: z.core.$ZodIssue, field: string, pair: readonly string[], input: unknown): string {
  const given = pair.filter((name) => valueAt(input, [...issue.path, name]) !== undefined);
  const sent = given.map((name) => `${name} ${received(valueAt(input, [...issue.path, name]), false)}`);
  const came = sent.length === 0 ? "neither" : listed(sent);
  return `${field || listed(pair)}: expected ${expected(issue, field)}, received ${came}.`;
}

/**
 * A body field's value that passed the schema but not a later check (an amount's precision, in the route). The route
 * checks the value as the schema left it ("0.0" → "0", the JSON number 1.5e-9 → "0.0000000015"), but the answer
 * names what the client sent, as the schema's own refusals do: `route` (openapi.ts) hands the refusal the body as
 * parsed (namingSent), and the value at the field's path there is the one received.
 */
export class FieldRefusal extends ApiError {
  constructor(
    code: ApiErrorCode | RejectionCode,
    /** The field's path in the body, dotted: `legs.1.margin`. */
    readonly field: string,
    private readonly expectedText: string,
    value: unknown,
    private readonly note?: string,
  ) {
    super(code, fieldProblem(field, expectedText, value, false, note));
  }

  /** This refusal naming the field's value in `sent`, the body as parsed; itself when the field is not there. */
  namingSent(sent: unknown): FieldRefusal {
    const value = valueAt(sent, this.field.split("."));
    return value === undefined ? this : new FieldRefusal(this.code, this.field, this.expectedText, value, this.note);
  }
}

/** A value that passed its schema but not a later check; a body field's is a FieldRefusal. */
export function invalidField(
  code: ApiErrorCode | RejectionCode,
  field: string,
  expectedText: string,
  value: unknown,
  /** What is wrong with the value, when the value alone does not show it ("26 digits before the decimal point"). */
  note?: string,
): ApiError {
  return new ApiError(code, fieldProblem(field, expectedText, value, false, note));
}

function fieldProblem(field: string, expectedText: string, value: unknown, withType: boolean, note?: string): string {
  const what = note === undefined ? "" : `: ${note}`;
  return `${field}: expected ${expectedText}, received ${received(value, withType)}${what}.`;
}

/**
 * What a field takes, where the schema's own wording would be vague or differ by which rule failed: `limit=1000`
 * (too many digits) and `limit=101` (too big) are the same mistake. Leverage's range is the engine's
 * (DEFAULT_PARAMS.maxLeverage in engine/core/params.ts; the engine refuses above it with INVALID_LEVERAGE).
 */
const FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  leverage: `${leverageExpected(100)}, as a JSON number such as 10`,
  limit: "a whole number from 1 to 100",
  margin: AMOUNT_EXPECTED,
  quantity: AMOUNT_EXPECTED,
  stopLoss: AMOUNT_EXPECTED,
  takeProfit: AMOUNT_EXPECTED,
};

/** zod's type names in words; JsonNumber is how json-body.ts hands over a JSON number. */
const TYPE_WORDS: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  JsonNumber: "a number",
  boolean: "true or false",
  object: "a JSON object",
  array: "an array",
  null: "null",
};

function expected(issue: z.core.$ZodIssue, field: string): string {
  // A schema that words its own expectation (params.expected) knows better than the table: `limit` is 1 to 100 on
  // the histories but 1 to 1000 on candles.
  const own: unknown = issue.code === "custom" ? issue.params?.["expected"] : undefined;
  if (typeof own === "string") return own;
  // By the field's own name, wherever it is: an OCO leg's `legs.1.margin` is a margin like any other.
  const forField = FIELD_EXPECTATIONS[field.slice(field.lastIndexOf(".") + 1)];
  if (forField !== undefined) return forField;
  // A schema's own message, where it gave one, is already worded for people ("expected a trade id such as T0-42").
  if (issue.message.startsWith("expected ")) return issue.message.slice("expected ".length);
  switch (issue.code) {
    case "invalid_type":
      return TYPE_WORDS[issue.expected] ?? issue.expected;
    case "invalid_value":
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_union":
      return [...new Set(issue.errors.flat().map((sub) => expected(sub, "")))].join(" or ");
    case "too_big":
      return bound("at most", "below", issue.origin, issue.maximum, issue.inclusive);
    case "too_small":
      return issue.origin === "string" && Number(issue.minimum) === 1
        ? "a non-empty string"
        : bound("at least", "above", issue.origin, issue.minimum, issue.inclusive);
    case "invalid_format":
      return issue.format === "email"
        ? "an email address"
        : issue.format === "regex"
          ? `text matching ${issue.pattern ?? "the documented pattern"}`
          : `a valid ${issue.format}`;
    case "not_multiple_of":
      return `a multiple of ${issue.divisor}`;
    default:
      return issue.message;
  }
}

function bound(inclusive: string, exclusive: string, origin: string, limit: number | bigint, isInclusive?: boolean) {
  const unit = origin === "string" ? " characters" : origin === "array" || origin === "set" ? " items" : "";
  return `${isInclusive === false ? exclusive : inclusive} ${String(limit)}${unit}`;
}

const MAX_UNKNOWN_SHOWN = 5;

function unknownKeys(keys: readonly string[], where: "body" | "query", fields?: readonly string[]): string {
  const kind = where === "body" ? "field" : "query parameter";
  // A body may hold thousands of keys: the answer names the first few and counts the rest.
  const shownKeys = keys.slice(0, MAX_UNKNOWN_SHOWN).map(quoted);
  if (keys.length > MAX_UNKNOWN_SHOWN) shownKeys.push(`${keys.length - MAX_UNKNOWN_SHOWN} more`);
  const named = `Unknown ${kind}${keys.length === 1 ? "" : "s"} ${listed(shownKeys)}`;
  if (fields === undefined) return `${named}.`;
  return `${named}; this request takes ${fields.length === 0 ? `no ${kind}s` : listed(fields)}.`;
}

/** Strings longer than this are cut in an answer: the client knows what it sent, and the answer stays small. */
const SHOWN_CHARACTERS = 40;

/**
 * What the client sent, for the answer: short values as JSON text, long ones cut, anything outside printable ASCII
 * escaped (so control and bidirectional characters cannot disguise the message), structures by their kind.
 */
function received(value: unknown, withType: boolean): string {
  if (value === undefined) return "nothing";
  if (value instanceof JsonNumber) {
    const { text, cut } = shown(value.text);
    return cut ? `${text}… (${value.text.length} characters)` : text;
  }
  if (typeof value === "string") {
    const { text, cut } = shown(value);
    const json = JSON.stringify(text).replace(
      /[^\x20-\x7e]/g,
      (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
    );
    const quoted = cut ? `${json.slice(0, -1)}…" (${[...value].length} characters)` : json;
    return withType ? `the string ${quoted}` : quoted;
  }
  if (Array.isArray(value)) return `an array of ${value.length} item${value.length === 1 ? "" : "s"}`;
  if (value === null || typeof value === "boolean" || typeof value === "number") return String(value);
  return typeof value === "object" ? "an object" : typeof value;
}

function shown(text: string): { text: string; cut: boolean } {
  const chars = [...text];
  return chars.length <= SHOWN_CHARACTERS
    ? { text, cut: false }
    : { text: chars.slice(0, SHOWN_CHARACTERS).join(""), cut: true };
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function fieldsOf(schema: z.ZodType): readonly string[] | undefined {
  const shape = (schema as { shape?: unknown }).shape;
  return shape !== null && typeof shape === "object" ? Object.keys(shape) : undefined;
}

/** Text from the client as a JSON string for an answer: cut when long, anything outside printable ASCII escaped. */
export function quoted(text: string): string {
  return received(text, false);
}

function listed(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)!}`;
}
