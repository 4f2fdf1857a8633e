/**
 * How a route is declared: one `createRoute` definition per operation (method, path, summary, request schemas,
 * responses with examples, error codes), passed to `route()`, which both registers it in the app's OpenAPI
 * registry and serves it. The request schemas in the definition are the ones the handler's input is validated
 * with, through our own readers (validate.ts): the lossless JSON body parser, the size and media-type checks and
 * the field → error code table, rather than the library's validator (which would read the body with
 * `c.req.json()` and lose a number's digits). The OpenAPI 3.1 document is generated from the app's registry.
 */
import { OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { REJECTIONS, type RejectionCode } from "../contract/rejections.ts";
import type { ApiContext, ApiEnv } from "./context.ts";
import { API_ERRORS, rejectionStatus, type ApiErrorCode } from "./errors.ts";
import { errorView } from "./schemas.ts";
import { FieldRefusal, readJson, readOptionalJson, readQuery } from "./validate.ts";

export { createRoute } from "@hono/zod-openapi";

/** A group of routes (or the whole app) whose definitions end up in the OpenAPI document. */
export function apiRouter(): OpenAPIHono<ApiEnv> {
  return new OpenAPIHono<ApiEnv>();
}

type BodyOf<R> = R extends { request: { body: { content: { "application/json": { schema: infer S } } } } }
  ? S extends z.ZodType
    ? z.output<S>
    : undefined
  : undefined;
type QueryOf<R> = R extends { request: { query: infer S } }
  ? S extends z.ZodType
    ? z.output<S>
    : undefined
  : undefined;

export interface RouteInput<R> {
  readonly body: BodyOf<R>;
  readonly query: QueryOf<R>;
}

/** A rate limit's count of one request (middleware.ts limitRate): 429 over the limit. */
export type RateCheck = (c: ApiContext) => Promise<void>;

/**
 * The query of a route that declares none: no parameter. One sent anyway is a 400 naming it, as on the routes that
 * do take some, rather than ignored: `GET /market/quotes?asset=BTC` answered with every quote reads as filtered.
 */
const NO_QUERY = z.strictObject({});

/**
 * Serves `definition` on `app` and adds it to the document (unless `hide`). The definition's middleware runs first
 * (a session check answers 401 before a bad body's 400), then its body and query are read through its own schemas
 * (a route without a query schema takes no query parameter: NO_QUERY), then its `limit` counts the request: one
 * refused for its input changes nothing, its rate limit's count included.
 */
export function route<R extends RouteConfig & { limit?: RateCheck }>(
  app: OpenAPIHono<ApiEnv>,
  definition: R,
  handler: (c: ApiContext, input: RouteInput<R>) => Response | Promise<Response>,
): void {
  const { middleware, hide, limit, ...operation } = definition;
  if (hide !== true) app.openAPIRegistry.registerPath(operation as RouteConfig);
  const json = definition.request?.body?.content["application/json"] as { schema?: z.ZodType } | undefined;
  const bodySchema = json?.schema;
  const readBody = definition.request?.body?.required === false ? readOptionalJson : readJson;
  const querySchema = definition.request?.query as z.ZodType | undefined;
  const before = (middleware === undefined ? [] : [middleware].flat()) as MiddlewareHandler<ApiEnv>[];
  app.on([definition.method.toUpperCase()], [definition.path], ...before, async (c: ApiContext) => {
    const body = bodySchema === undefined ? undefined : await readBody(c, bodySchema);
    const input = {
      body: body?.value,
      query: querySchema === undefined ? noQuery(c) : readQuery(c, querySchema),
    } as RouteInput<R>;
    if (limit !== undefined) await limit(c);
    if (body === undefined) return handler(c, input);
    try {
      return await handler(c, input);
    } catch (err) {
      // The route's own checks see values as the schema left them; the answer names them as sent (validate.ts).
      throw err instanceof FieldRefusal ? err.namingSent(body.sent) : err;
    }
  });
}

/** Refuses any query parameter; a URL without a query (the trade POSTs' hot path) is not parsed for one. */
function noQuery(c: ApiContext): undefined {
  if (c.req.url.includes("?")) readQuery(c, NO_QUERY);
  return undefined;
}

/** A JSON request body; required. */
export function jsonBody<S extends z.ZodType>(schema: S) {
  return { required: true, content: { "application/json": { schema } } } as const;
}

/** A JSON request body the client may leave out (validate.ts readOptionalJson). */
export function optionalJsonBody<S extends z.ZodType>(schema: S) {
  return { required: false, content: { "application/json": { schema } } } as const;
}

/** A JSON success response. */
export function jsonResponse<S extends z.ZodType>(schema: S, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** Operations that need a session: the cookie set by sign-in, or the same token as a Bearer header. */
export const SIGNED_IN = [{ cookie: [] }, { bearer: [] }];
/** Operations anyone may call. */
export const PUBLIC: never[] = [];

/** The Retry-After header of an answer that says when to come back (a 429, a 503), in whole seconds. */
export function retryAfterHeader(description: string) {
  return { "Retry-After": { description, schema: { type: "integer" as const, minimum: 1 } } };
}

/** What a 429's or 503's Retry-After says, by the codes it answers with. */
function retryAfterOf(status: number, codes: readonly ErrorCode[]) {
  if (status === 429) return retryAfterHeader("Seconds left of the limit's current window, at least 1.");
  const waits = codes.flatMap((code) => {
    const known = code in API_ERRORS ? API_ERRORS[code as ApiErrorCode] : undefined;
    return known !== undefined && "retryAfterSeconds" in known ? [`${known.retryAfterSeconds} for ${code}`] : [];
  });
  return retryAfterHeader(`Seconds to wait before trying again: ${waits.join(", ")}.`);
}

export type ErrorCode = ApiErrorCode | RejectionCode;

/**
 * What any operation with a JSON body can answer before its handler runs: the body's reading and validation
 * (validate.ts) and the origin check every POST passes (middleware.ts).
 */
export const JSON_BODY_ERRORS: readonly ErrorCode[] = [
  "MALFORMED_JSON",
  "INVALID_REQUEST",
  "FORBIDDEN_ORIGIN",
  "PAYLOAD_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "INCOMPLETE_BODY",
];

/**
 * The error responses of an operation, one per status, from the codes it can answer with: each status lists its
 * codes and shows one example body per code. Statuses come from the catalogue (errors.ts) and, for the engine's
 * refusals, rejectionStatus. Every operation can answer 400 INVALID_REQUEST (a query parameter it does not take,
 * route()) and 500 INTERNAL: both are added to every operation.
 */
export function errorResponses(codes: readonly ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of ["INVALID_REQUEST" as const, ...codes, "INTERNAL" as const]) {
    const status =
      code in API_ERRORS ? API_ERRORS[code as ApiErrorCode].status : rejectionStatus(code as RejectionCode);
    const list = byStatus.get(status) ?? [];
    if (!list.includes(code)) list.push(code);
    byStatus.set(status, list);
  }
  const out: Record<string, unknown> = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    const examples = Object.fromEntries(
      list.map((code) => [code, { summary: code, value: { error: { code, message: errorMessage(code) } } }]),
    );
    out[String(status)] = {
      description: `${statusText(status)}: ${list.join(", ")}`,
      ...(status === 429 || status === 503 ? { headers: retryAfterOf(status, list) } : {}),
      content: { "application/json": { schema: errorView, examples } },
    };
  }
  return out as Record<string, { description: string; content: { "application/json": { schema: typeof errorView } } }>;
}

function errorMessage(code: ErrorCode): string {
  if (code in API_ERRORS) return API_ERRORS[code as ApiErrorCode].message;
  return FIELD_FIRST_EXAMPLES[code as RejectionCode] ?? REJECTIONS[code as RejectionCode];
}

/**
 * Example messages of the refusals that lead with their field (contract/rejections.ts): each is a whole message the
 * engine sends, with what it received, as its catalogue entry alone never is. Any other refusal's message starts with
 * its entry, which is its example. openapi.test.ts checks each against the engine's own answer.
 */
export const FIELD_FIRST_EXAMPLES: Readonly<Partial<Record<RejectionCode, string>>> = {
  INVALID_LEVERAGE: "leverage: expected a whole number from 1 to 100, received 500.",
  TRADE_NOT_FOUND: 'tradeId: expected the id of an open trade of this account, received "T0-999".',
  ORDER_NOT_FOUND: 'orderId: expected the id of a pending order of this account, received "P0-999".',
  NOTHING_TO_MODIFY:
    "stopLoss, takeProfit and trailingStop: expected at least one that sets, moves or removes an exit, received " +
    "stopLoss at 4250, as the trade already has it.",
};

const STATUS_TEXT: Record<number, string> = {
  400: "Bad request",
  401: "Not signed in",
  403: "Forbidden",
  404: "Not found",
  409: "Conflict",
  413: "Body too large",
  415: "Not JSON",
  422: "Refused by the engine",
  429: "Rate limited",
  500: "Internal error",
  503: "Unavailable",
  504: "Engine timeout",
};

function statusText(status: number): string {
  return STATUS_TEXT[status] ?? "Error";
}

export const API_DESCRIPTION = [
  "Paper/CFD trading on live Backpack prices. Money, prices and quantities are decimal strings; a request may",
  "also send money as a JSON number, which is read by its decimal text. Every error is",
  '`{"error": {"code", "message"}}`: branch on the code, show the message.',
  "",
  "Sign in with `POST /api/v1/auth`, follow the emailed link, and the session comes back as an HttpOnly cookie:",
  "`__Host-session` when the API's cookies are Secure (APP_URL is https, or NODE_ENV=production), `session` over",
  "plain http. Scripts may send the same token as `Authorization: Bearer <token>`.",
].join("\n");

/**
 * The OpenAPI 3.1 document of every route declared on `app`, whose session cookie is named `sessionCookie`
 * (middleware.ts sessionCookieName).
 */
export function openApiDocument(
  app: OpenAPIHono<ApiEnv>,
  serverUrl: string,
  sessionCookie: string,
): Record<string, unknown> {
  const document = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "Paper broker API",
      version: "1.0.0",
      description: API_DESCRIPTION,
      // Not open source: an SPDX reference of our own (the package is private).
      license: { name: "Proprietary", identifier: "LicenseRef-Proprietary" } as { name: string },
    },
    servers: [{ url: serverUrl }],
    tags: TAGS,
  });
  document.components = { ...document.components, securitySchemes: securitySchemes(sessionCookie) };
  return document as unknown as Record<string, unknown>;
}

/** The ways a request carries its session: the cookie, under this API's name for it, or a Bearer header. */
function securitySchemes(sessionCookie: string) {
  return {
    cookie: {
      type: "apiKey" as const,
      in: "cookie",
      name: sessionCookie,
      description:
        "Set by `GET /api/v1/auth/verify`. Named `__Host-session` when the API's cookies are Secure (APP_URL is " +
        "https, or NODE_ENV=production), `session` over plain http; only that name is taken.",
    },
    bearer: {
      type: "http" as const,
      scheme: "bearer",
      bearerFormat: "JWT",
      description: "The session token, for clients that do not keep cookies.",
    },
  };
}

export const TAGS = [
  { name: "Auth", description: "Magic-link sign-in and sessions." },
  { name: "Trading", description: "Leveraged trades and spot orders; the engine acts on them." },
  { name: "Orders", description: "Pending entry orders (limit, stop, one-cancels-other) and their history." },
  { name: "Account", description: "Balances and the tradable assets." },
  { name: "Market", description: "Public prices: the latest quotes and candles. No sign-in." },
  { name: "Stream", description: "Tickets for the live WebSocket stream (docs/stream.md)." },
  { name: "System", description: "Health of the API and what it depends on." },
];
