/**
 * The API as an OpenAPI 3.1 document, generated from the zod schemas the routes validate with (schemas.ts) and the
 * error catalogue (errors.ts), plus a small self-contained docs page (no CDN: it renders the document itself).
 */
import { z } from "zod";
import { API_ERRORS } from "./errors.ts";
import {
  closeTradeRequest,
  createTradeRequest,
  errorView,
  historyQuery,
  jsonNumber,
  responses,
  signInRequest,
  spotOrderRequest,
  verifyQuery,
} from "./schemas.ts";

interface Operation {
  readonly method: "get" | "post" | "delete";
  readonly path: string;
  readonly summary: string;
  readonly auth: boolean;
  readonly body?: z.ZodType;
  readonly query?: z.ZodType;
  readonly idempotent?: boolean;
  readonly ok: { status: number; schema: z.ZodType; description?: string };
  readonly errors: readonly number[];
}

const TRADE_ERRORS = [400, 401, 403, 404, 409, 413, 415, 422, 429, 503, 504];

export const OPERATIONS: readonly Operation[] = [
  {
    method: "get",
    path: "/health",
    summary: "Liveness, and readiness of Redis and Postgres",
    auth: false,
    ok: { status: 200, schema: responses.health },
    errors: [503],
  },
  {
    method: "post",
    path: "/api/v1/auth",
    summary: "Email a sign-in link (same answer for any address)",
    auth: false,
    body: signInRequest,
    ok: { status: 200, schema: responses.message },
    errors: [400, 403, 413, 415, 429, 503],
  },
  {
    method: "get",
    path: "/api/v1/auth/verify",
    summary: "Follow a sign-in link: creates the user on first sign-in, sets the session cookie",
    auth: false,
    query: verifyQuery,
    ok: { status: 200, schema: responses.user, description: "Signed in; or 302 to APP_REDIRECT_URL when configured" },
    errors: [400, 401, 503, 504],
  },
  {
    method: "get",
    path: "/api/v1/auth/me",
    summary: "The signed-in user",
    auth: true,
    ok: { status: 200, schema: responses.user },
    errors: [401],
  },
  {
    method: "delete",
    path: "/api/v1/auth/logout",
    summary: "Sign out: clears the cookie and revokes the session",
    auth: false,
    ok: { status: 200, schema: responses.message },
    errors: [403],
  },
  {
    method: "post",
    path: "/api/v1/trade/create",
    summary: "Open a leveraged trade",
    auth: true,
    body: createTradeRequest,
    idempotent: true,
    ok: { status: 201, schema: responses.trade },
    errors: TRADE_ERRORS,
  },
  {
    method: "post",
    path: "/api/v1/trade/close",
    summary: "Close one of your open trades",
    auth: true,
    body: closeTradeRequest,
    idempotent: true,
    ok: { status: 200, schema: responses.closedTrade },
    errors: TRADE_ERRORS,
  },
  {
    method: "post",
    path: "/api/v1/trade/order",
    summary: "Spot market order",
    auth: true,
    body: spotOrderRequest,
    idempotent: true,
    ok: { status: 201, schema: responses.order },
    errors: TRADE_ERRORS,
  },
  {
    method: "get",
    path: "/api/v1/trade/open",
    summary: "Your open trades with live PnL",
    auth: true,
    ok: { status: 200, schema: responses.openTrades },
    errors: [401],
  },
  {
    method: "get",
    path: "/api/v1/trade/history",
    summary: "Your closed trades, newest first, paginated",
    auth: true,
    query: historyQuery,
    ok: { status: 200, schema: responses.history },
    errors: [400, 401],
  },
  {
    method: "get",
    path: "/api/v1/account/balance/usd",
    summary: "USD not locked as margin",
    auth: true,
    ok: { status: 200, schema: responses.usdBalance },
    errors: [401],
  },
  {
    method: "get",
    path: "/api/v1/account/balance",
    summary: "All balances",
    auth: true,
    ok: { status: 200, schema: responses.balances },
    errors: [401],
  },
  {
    method: "get",
    path: "/api/v1/account/assets",
    summary: "Tradable assets with decimals and the latest quote",
    auth: true,
    ok: { status: 200, schema: responses.assets },
    errors: [401],
  },
];

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  return z.toJSONSchema(schema, {
    io,
    unrepresentable: "any",
    // A JSON number in a body (json-body.ts): money may be sent as one and is read by its decimal text.
    override: (ctx) => {
      if (ctx.zodSchema === jsonNumber) Object.assign(ctx.jsonSchema, { type: "number" });
    },
  });
}

export function openApiDocument(serverUrl: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const parameters: unknown[] = [];
    if (op.query !== undefined) {
      const schema = jsonSchema(op.query, "input") as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(schema.properties ?? {})) {
        parameters.push({ name, in: "query", required: schema.required?.includes(name) ?? false, schema: s });
      }
    }
    if (op.idempotent === true) {
      parameters.push({
        name: "Idempotency-Key",
        in: "header",
        required: false,
        schema: { type: "string", maxLength: 128 },
        description: "Same key and body: the first answer, acted on once. Same key, other body: 409.",
      });
    }
    const responseSet: Record<string, unknown> = {
      [op.ok.status]: {
        description: op.ok.description ?? "OK",
        content: { "application/json": { schema: jsonSchema(op.ok.schema, "output") } },
      },
    };
    for (const status of op.errors) {
      const codes = Object.entries(API_ERRORS)
        .filter(([, e]) => e.status === status)
        .map(([code]) => code);
      const description =
        status === 422 ? "Refused by the engine (e.g. INSUFFICIENT_BALANCE)" : codes.join(", ") || "Error";
      responseSet[status] = {
        description,
        content: { "application/json": { schema: jsonSchema(errorView, "output") } },
      };
    }
    paths[op.path] = {
      ...paths[op.path],
      [op.method]: {
        summary: op.summary,
        ...(op.auth ? { security: [{ cookie: [] }, { bearer: [] }] } : {}),
        ...(parameters.length > 0 ? { parameters } : {}),
        ...(op.body !== undefined
          ? {
              requestBody: {
                required: true,
                content: { "application/json": { schema: jsonSchema(op.body, "input") } },
              },
            }
          : {}),
        responses: responseSet,
      },
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Paper broker API",
      version: "1.0.0",
      description: "Paper/CFD trading on live Backpack prices. Money, prices and quantities are decimal strings.",
    },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: {
        cookie: { type: "apiKey", in: "cookie", name: "session" },
        bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
      },
    },
    paths,
  };
}

export const DOCS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Paper broker API</title>
<style>body{font:14px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}code,pre{background:#f4f4f4;padding:2px 4px}
pre{padding:8px;overflow:auto}h2{margin-top:2em;border-bottom:1px solid #ddd}.m{font-weight:bold;text-transform:uppercase;margin-right:.5em}</style></head>
<body><h1>Paper broker API</h1><p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p><div id="ops"></div>
<script>
fetch('/api/v1/openapi.json').then(r=>r.json()).then(doc=>{
  const root=document.getElementById('ops');
  for(const [path,ops] of Object.entries(doc.paths)) for(const [method,op] of Object.entries(ops)){
    const h=document.createElement('h2');const m=document.createElement('span');m.className='m';m.textContent=method;
    h.append(m,document.createTextNode(path));root.append(h);
    const p=document.createElement('p');p.textContent=op.summary+(op.security?' (signed in)':'');root.append(p);
    const body=op.requestBody&&op.requestBody.content['application/json'].schema;
    if(body){const pre=document.createElement('pre');pre.textContent='Body: '+JSON.stringify(body,null,2);root.append(pre);}
    const pre=document.createElement('pre');pre.textContent='Responses: '+Object.keys(op.responses).join(', ');root.append(pre);
  }
});
</script></body></html>`;
