/**
 * The Node API's Prometheus metrics (server.ts serves them on API_METRICS_PORT; the Lambda entry has no metrics
 * server and records none): request durations by method, matched route pattern and status, and the engine round
 * trip of trade requests by outcome. Labels stay bounded: the route is the pattern a request matched (its
 * `:params` unfilled), never the raw path, and "unmatched" for paths no route has.
 */
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { Histogram, type Registry } from "prom-client";
import type { ApiEnv } from "./context.ts";
import type { EngineClient } from "./engine-client.ts";
import { ApiError } from "./errors.ts";

export interface ApiMetrics {
  /** Times every request; app.ts runs it first. */
  readonly requests: MiddlewareHandler<ApiEnv>;
  /** The same client, each send timed. */
  timedEngine(client: EngineClient): EngineClient;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
/** Seconds, from a millisecond (a quick read) to the engine timeout's order of magnitude. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const ENGINE_OUTCOMES = ["answered", "timeout", "unavailable", "error"] as const;

export function apiMetrics(registry: Registry): ApiMetrics {
  const registers = [registry];
  const requests = new Histogram({
    name: "api_request_duration_seconds",
    help: "HTTP requests from first byte in to the response handed to Node, by method, route pattern and status.",
    labelNames: ["method", "route", "status"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const engine = new Histogram({
    name: "api_engine_round_trip_duration_seconds",
    help: "A trade request's instruction to the engine until its answer (or the give-up), by outcome: answered, timeout (504), unavailable (no engine: 503), error.",
    labelNames: ["outcome"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const outcomes = Object.fromEntries(ENGINE_OUTCOMES.map((o) => [o, engine.labels(o)])) as Record<
    (typeof ENGINE_OUTCOMES)[number],
    ReturnType<typeof engine.labels>
  >;
  return {
    requests: async (c, next) => {
      const startedAt = performance.now();
      let status: number | undefined;
      try {
        await next();
        status = c.res.status;
      } finally {
        requests.observe(
          {
            method: METHODS.has(c.req.method) ? c.req.method : "other",
            route: routePattern(c),
            status: String(status ?? 500),
          },
          (performance.now() - startedAt) / 1000,
        );
      }
    },
    timedEngine: (client) => ({
      async send(userId, requestId, instruction, timeLeftMs) {
        const startedAt = performance.now();
        let outcome: (typeof ENGINE_OUTCOMES)[number] = "error";
        try {
          const answer = await client.send(userId, requestId, instruction, timeLeftMs);
          outcome = "answered";
          return answer;
        } catch (err) {
          if (err instanceof ApiError && err.code === "ENGINE_TIMEOUT") outcome = "timeout";
          else if (err instanceof ApiError && err.code === "ENGINE_UNAVAILABLE") outcome = "unavailable";
          throw err;
        } finally {
          outcomes[outcome].observe((performance.now() - startedAt) / 1000);
        }
      },
    }),
  };
}

/** The pattern of the endpoint the request matched: its last route that is not middleware (`use`, method ALL). */
function routePattern(c: Parameters<MiddlewareHandler<ApiEnv>>[0]): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) if (routes[i]!.method !== "ALL") return routes[i]!.path;
  return "unmatched";
}
