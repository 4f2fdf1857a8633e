/** Test support: small request builders for in-process calls (`app.request`) with a session and JSON bodies. */
import type { Hono } from "hono";
import type { ApiEnv } from "../context.ts";

export interface Call {
  readonly status: number;
  readonly body: Record<string, unknown> & { error?: { code: string; message: string } };
  readonly headers: Headers;
}

export function client(app: Hono<ApiEnv>, token?: string) {
  const auth: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const call = async (path: string, init: RequestInit = {}): Promise<Call> => {
    const res = await app.request(path, {
      ...init,
      headers: { ...auth, ...(init.headers as Record<string, string> | undefined) },
    });
    const text = await res.text();
    let body: Call["body"];
    try {
      body = JSON.parse(text) as Call["body"];
    } catch {
      body = { raw: text };
    }
    return { status: res.status, body, headers: res.headers };
  };
  return {
    get: (path: string, headers: Record<string, string> = {}) => call(path, { headers }),
    post: (path: string, body: unknown, headers: Record<string, string> = {}) =>
      call(path, {
        method: "POST",
        body: typeof body === "string" ? body : JSON.stringify(body),
        headers: { "content-type": "application/json", ...headers },
      }),
    del: (path: string, headers: Record<string, string> = {}) => call(path, { method: "DELETE", headers }),
  };
}
