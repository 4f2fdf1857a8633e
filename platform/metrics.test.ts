import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import { Counter } from "prom-client";
import { describe, expect, it } from "vitest";
import { COMPONENTS, componentNamed, replicasOf } from "./components.ts";
import { ConfigError } from "./config.ts";
import { createLogger } from "./log.ts";
import {
  createRegistry,
  metricsBannerLines,
  metricsPortVariable,
  readMetricsConfig,
  replicaMetricsConfig,
  replicaMetricsPortVariable,
  serveMetrics,
} from "./metrics.ts";

const log = createLogger("test", { sink: () => undefined });

describe("metrics configuration", () => {
  it("defaults each component to its port in the components table, on 127.0.0.1", () => {
    for (const c of COMPONENTS) {
      expect(readMetricsConfig({}, c.name)).toEqual({
        variable: metricsPortVariable(c.name),
        port: c.metricsPort,
        host: "127.0.0.1",
      });
    }
    const replicas = COMPONENTS.flatMap(replicasOf);
    expect(new Set(replicas.map((r) => r.metricsPort)).size).toBe(replicas.length);
  });

  it("gives each engine process its own name and port; the second follows the first's 0 or off", () => {
    const [first, second] = replicasOf(componentNamed("engine"));
    expect([first!.name, second!.name]).toEqual(["engine-1", "engine-2"]);
    expect(replicasOf(componentNamed("worker")).map((r) => r.name)).toEqual(["worker"]);
    expect(replicaMetricsPortVariable(second!)).toBe("ENGINE_2_METRICS_PORT");
    const port = (env: Record<string, string>) => [first, second].map((r) => replicaMetricsConfig(env, r!).port);
    expect(port({})).toEqual([9141, 9146]);
    expect(port({ ENGINE_METRICS_PORT: "9500" })).toEqual([9500, 9146]);
    expect(port({ ENGINE_METRICS_PORT: "0" })).toEqual([0, 0]);
    expect(port({ ENGINE_METRICS_PORT: "off" })).toEqual([undefined, undefined]);
    expect(port({ ENGINE_METRICS_PORT: "0", ENGINE_2_METRICS_PORT: "9600" })).toEqual([0, 9600]);
    expect(() => replicaMetricsConfig({ ENGINE_2_METRICS_PORT: "x" }, second!)).toThrow(
      'ENGINE_2_METRICS_PORT must be a port number from 0 to 65535 (0: a free port) or "off" (no metrics), got "x"',
    );
  });

  it("reads the component's own variable: a port, 0 for a free one, off for none", () => {
    const env = {
      ENGINE_METRICS_PORT: "9500",
      WORKER_METRICS_PORT: "0",
      API_METRICS_PORT: " off ",
      METRICS_HOST: "::1",
    };
    expect(readMetricsConfig(env, "engine")).toMatchObject({ port: 9500, host: "::1" });
    expect(readMetricsConfig(env, "worker").port).toBe(0);
    expect(readMetricsConfig(env, "api").port).toBeUndefined();
    expect(readMetricsConfig(env, "poller").port).toBe(COMPONENTS.find((c) => c.name === "poller")!.metricsPort);
  });

  it.each(["abc", "70000", "-1", "9141.5", "offf", "123456"])(
    "refuses %j, naming the variable and the choices",
    (raw) => {
      const read = () => readMetricsConfig({ POLLER_METRICS_PORT: raw }, "poller");
      expect(read).toThrow(ConfigError);
      expect(read).toThrow(
        `POLLER_METRICS_PORT must be a port number from 0 to 65535 (0: a free port) or "off" (no metrics), got "${raw}"`,
      );
    },
  );

  it(".env.example lists every component's variable with its default from the table", () => {
    const example = readFileSync(resolve(import.meta.dirname, "../.env.example"), "utf8");
    for (const c of COMPONENTS) {
      const [first, ...others] = replicasOf(c);
      expect(example).toMatch(new RegExp(`^${replicaMetricsPortVariable(first!)}=${first!.metricsPort}$`, "m"));
      // A further replica's variable is left empty: unset, it follows the component's off or 0 (replicaMetricsConfig),
      // which a value shown would override; its comment gives the port it takes otherwise.
      for (const r of others) {
        expect(example).toMatch(new RegExp(`^${replicaMetricsPortVariable(r)}=$`, "m"));
        expect(example).toMatch(
          new RegExp(`^#.*unset: ${r.metricsPort}\\b.*\n${replicaMetricsPortVariable(r)}=$`, "m"),
        );
      }
    }
    expect(example).toMatch(/^METRICS_HOST=127\.0\.0\.1$/m);
  });

  it("the banner lists where each process serves its metrics", () => {
    const lines = metricsBannerLines({ WORKER_METRICS_PORT: "0", POLLER_METRICS_PORT: "off" }, COMPONENTS);
    expect(lines).toEqual([
      "    metrics      engine-1 http://127.0.0.1:9141/metrics",
      "                 engine-2 http://127.0.0.1:9146/metrics",
      "                 worker   a free port: see its metrics_listening log line",
      "                 poller   off (POLLER_METRICS_PORT=off)",
      "                 api      http://127.0.0.1:9144/metrics",
      "                 stream   http://127.0.0.1:9145/metrics",
    ]);
  });
});

describe("the metrics server", () => {
  it("serves the registry at GET /metrics in Prometheus text format, and nothing else", async () => {
    const registry = createRegistry("worker");
    new Counter({ name: "worker_test_things_total", help: "Things.", registers: [registry] }).inc(3);
    const lines: Record<string, unknown>[] = [];
    const server = await serveMetrics(
      registry,
      { variable: "WORKER_METRICS_PORT", port: 0, host: "127.0.0.1" },
      createLogger("worker", { sink: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }),
    );
    try {
      expect(server!.port).toBeGreaterThan(0);
      expect(lines).toContainEqual(
        expect.objectContaining({ event: "metrics_listening", port: server!.port, url: server!.url }),
      );
      const res = await fetch(server!.url);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
      const body = await res.text();
      expect(body).toContain("# TYPE worker_test_things_total counter\nworker_test_things_total 3\n");
      // prom-client's process metrics, under the component's name.
      expect(body).toMatch(/^worker_process_cpu_seconds_total \d/m);
      expect(body).toMatch(/^worker_nodejs_heap_size_used_bytes \d/m);
      expect(body).not.toMatch(/^process_/m);
      expect((await fetch(server!.url.replace("/metrics", "/"))).status).toBe(404);
      expect((await fetch(server!.url, { method: "POST" })).status).toBe(404);
    } finally {
      await server?.close();
    }
  });

  it("answers GET /ready with 200 while the component says it is ready, 503 otherwise; without `ready`, 404", async () => {
    let ready = false;
    const config = { variable: "ENGINE_METRICS_PORT", port: 0, host: "127.0.0.1" };
    const log = createLogger("engine", { sink: () => undefined });
    const server = await serveMetrics(createRegistry("engine"), config, log, { ready: () => ready });
    const plain = await serveMetrics(createRegistry("worker"), config, log);
    try {
      const readyUrl = server!.url.replace("/metrics", "/ready");
      expect((await fetch(readyUrl)).status).toBe(503);
      ready = true;
      const res = await fetch(readyUrl);
      expect([res.status, await res.text()]).toEqual([200, "ready\n"]);
      expect((await fetch(readyUrl, { method: "POST" })).status).toBe(404);
      expect((await fetch(plain!.url.replace("/metrics", "/ready"))).status).toBe(404);
    } finally {
      await server?.close();
      await plain?.close();
    }
  });

  it("serves nothing when off", async () => {
    expect(
      await serveMetrics(
        createRegistry("api"),
        { variable: "API_METRICS_PORT", port: undefined, host: "127.0.0.1" },
        log,
      ),
    ).toBe(undefined);
  });

  it("a port in use is a configuration error naming the variable", async () => {
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
    const port = (squatter.address() as { port: number }).port;
    try {
      const serving = serveMetrics(
        createRegistry("engine"),
        { variable: "ENGINE_METRICS_PORT", port, host: "127.0.0.1" },
        log,
      );
      await expect(serving).rejects.toThrow(ConfigError);
      await expect(serving).rejects.toThrow(
        `cannot serve metrics on 127.0.0.1:${port} (EADDRINUSE): set ENGINE_METRICS_PORT to a free port, 0 for any, or off`,
      );
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it.each([
    ["an address not this machine's", "192.0.2.1", "EADDRNOTAVAIL"],
    // EAI_AGAIN instead on a machine without a name server.
    ["a host name that does not resolve", "nonsense.invalid", "ENOTFOUND|EAI_AGAIN"],
  ])("%s in METRICS_HOST is a configuration error naming METRICS_HOST", async (_, host, code) => {
    const serving = serveMetrics(createRegistry("stream"), { variable: "STREAM_METRICS_PORT", port: 0, host }, log);
    await expect(serving).rejects.toThrow(ConfigError);
    await expect(serving).rejects.toThrow(
      new RegExp(
        `^METRICS_HOST must be an address of this machine \\(127\\.0\\.0\\.1, or 0\\.0\\.0\\.0 for all of them\\), got "${host}" \\((${code})\\)$`,
      ),
    );
  });
});
