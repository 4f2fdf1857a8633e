import { Hono } from "hono";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parseSamples, sample } from "../platform/testing/metrics.ts";
import type { ApiEnv } from "./context.ts";
import type { EngineClient } from "./engine-client.ts";
import { ApiError } from "./errors.ts";
import { apiMetrics } from "./metrics.ts";

describe("API metrics", () => {
  it("times requests by method, the route pattern they matched (never the raw path) and status", async () => {
    const registry = new Registry();
    const metrics = apiMetrics(registry);
    const app = new Hono<ApiEnv>();
    app.use(metrics.requests);
    app.use("/api/*", async (c, next) => {
      if (c.req.header("x-refuse") !== undefined) throw new ApiError("RATE_LIMITED");
      await next();
    });
    const trades = new Hono<ApiEnv>();
    trades.get("/:id", (c) => c.json({ id: c.req.param("id") }));
    trades.post("/boom", () => {
      throw new Error("a bug");
    });
    app.route("/api/v1/trade", trades);
    app.onError((err, c) => c.json({}, err instanceof ApiError ? err.status : 500));

    for (const id of ["T0-1", "T0-2", "T0-3"]) expect((await app.request(`/api/v1/trade/${id}`)).status).toBe(200);
    expect((await app.request("/api/v1/trade/T0-4", { headers: { "x-refuse": "1" } })).status).toBe(429);
    expect((await app.request("/api/v1/trade/boom", { method: "POST" })).status).toBe(500);
    expect((await app.request("/secret/path/123")).status).toBe(404);
    expect((await app.request("/api/v1/trade/T0-1", { method: "FOO" })).status).toBe(404);

    const samples = parseSamples(await registry.metrics());
    const count = (method: string, route: string, status: string) =>
      sample(samples, "api_request_duration_seconds_count", { method, route, status });
    expect(count("GET", "/api/v1/trade/:id", "200")).toBe(3);
    // Refused by a middleware before the handler: still the endpoint's pattern.
    expect(count("GET", "/api/v1/trade/:id", "429")).toBe(1);
    expect(count("POST", "/api/v1/trade/boom", "500")).toBe(1);
    expect(count("GET", "unmatched", "404")).toBe(1);
    expect(count("other", "unmatched", "404")).toBe(1);
    expect([...samples.keys()].filter((k) => /T0-|secret/.test(k))).toEqual([]);
  });

  it("times the engine round trip by outcome and passes answers and errors through unchanged", async () => {
    const registry = new Registry();
    const outcomes: (() => Promise<never> | Promise<{ ok: false; error: { code: string; message: string } }>)[] = [
      () => Promise.resolve({ ok: false, error: { code: "X", message: "refused" } }),
      () => Promise.reject(new ApiError("ENGINE_TIMEOUT")),
      () => Promise.reject(new ApiError("ENGINE_UNAVAILABLE")),
      () => Promise.reject(new Error("redis down")),
    ];
    let call = 0;
    const inner: EngineClient = { send: () => outcomes[call++]!() };
    const engine = apiMetrics(registry).timedEngine(inner);
    const send = () => engine.send("u", "r", { kind: "create_account" });
    expect(await send()).toEqual({ ok: false, error: { code: "X", message: "refused" } });
    await expect(send()).rejects.toMatchObject({ code: "ENGINE_TIMEOUT" });
    await expect(send()).rejects.toMatchObject({ code: "ENGINE_UNAVAILABLE" });
    await expect(send()).rejects.toThrow("redis down");
    const samples = parseSamples(await registry.metrics());
    for (const outcome of ["answered", "timeout", "unavailable", "error"])
      expect(sample(samples, "api_engine_round_trip_duration_seconds_count", { outcome })).toBe(1);
  });
});
