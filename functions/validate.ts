/**
 * Reading a request's body and query through the contract's schemas (schemas.ts). A failure throws an ApiError
 * whose code says which kind of input was wrong and whose message names the field, so a client can fix its request
 * without reading the source.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, type ApiErrorCode } from "./errors.ts";
import { parseJsonBody } from "./json-body.ts";
import { FIELD_ERRORS } from "./schemas.ts";

export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new ApiError("UNSUPPORTED_MEDIA_TYPE");
  const body = parseJsonBody(await c.req.text());
  if (body === undefined) throw new ApiError("MALFORMED_JSON");
  return check(schema, body);
}

export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const url = new URL(c.req.url);
  const query: Record<string, string> = {};
  for (const [k, v] of url.searchParams) {
    if (k in query) throw new ApiError("INVALID_REQUEST", `Query parameter "${k}" is repeated.`);
    query[k] = v;
  }
  return check(schema, query);
}

function check<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String).join(".");
  const code: ApiErrorCode = (typeof issue.path[0] === "string" ? FIELD_ERRORS[issue.path[0]] : undefined) ?? "INVALID_REQUEST";
  const what = issue.code === "unrecognized_keys" ? `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(", ")}` : issue.message;
  throw new ApiError(code, field === "" ? `Invalid request: ${what}.` : `Invalid "${field}": ${what}.`);
}
