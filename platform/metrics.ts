/**
 * Prometheus metrics: each process keeps its own registry (prom-client) and serves it as text at `/metrics` on its
 * own port, separate from anything else it serves. The port is `<COMPONENT>_METRICS_PORT` (default from
 * platform/components.ts; 0 takes a free port, `off` serves nothing), so one environment, as `npm start` passes it
 * to every child, gives each process its own. Every metric of a process starts with its component's name,
 * prom-client's process and Node.js metrics too (`engine_process_cpu_seconds_total`).
 *
 * A replica after the first (the engine's standby) has its own variable, `ENGINE_2_METRICS_PORT`, which `npm start`
 * passes to it as ENGINE_METRICS_PORT (replicaMetricsConfig), with METRICS_PORT_VARIABLE naming the variable the
 * port came from, so that a port in use names the one to change.
 *
 * The listener binds METRICS_HOST, 127.0.0.1 by default, so nothing reaches it from outside the machine (the
 * task, deployed): a collector runs beside the process.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { componentNamed, replicasOf, type Component, type Replica } from "./components.ts";
import { ConfigError, text } from "./config.ts";
import type { Logger } from "./log.ts";

type Env = Readonly<Record<string, string | undefined>>;

export interface MetricsConfig {
  /** The variable the port came from, for messages. */
  readonly variable: string;
  /** undefined: metrics are off. 0: a free port. */
  readonly port: number | undefined;
  readonly host: string;
}

/** The variable that sets a component's metrics port: ENGINE_METRICS_PORT, … */
export function metricsPortVariable(component: Component["name"]): string {
  return `${component.toUpperCase()}_METRICS_PORT`;
}

/**
 * The component's port as `<COMPONENT>_METRICS_PORT` says. Messages name METRICS_PORT_VARIABLE instead when it is one
 * of the component's replica variables (`ENGINE_2_METRICS_PORT`): npm start sets it for each child it runs.
 */
export function readMetricsConfig(env: Env, component: Component["name"]): MetricsConfig {
  const config = configFrom(env, metricsPortVariable(component), componentNamed(component).metricsPort);
  const from = env.METRICS_PORT_VARIABLE?.trim() ?? "";
  const ours = new RegExp(`^${component.toUpperCase()}_(?:\\d+_)?METRICS_PORT$`).test(from);
  return ours ? { ...config, variable: from } : config;
}

/** The variables npm start gives a child for `config`, one replica's (replicaMetricsConfig). */
export function childMetricsEnv(component: Component["name"], config: MetricsConfig): Record<string, string> {
  return {
    [metricsPortVariable(component)]: config.port === undefined ? "off" : String(config.port),
    METRICS_PORT_VARIABLE: config.variable,
  };
}

/** The variable that sets one replica's metrics port: the component's for the first, ENGINE_2_METRICS_PORT, … */
export function replicaMetricsPortVariable(replica: Replica): string {
  const name = replica.component.name;
  return replica.index === 1 ? metricsPortVariable(name) : `${name.toUpperCase()}_${replica.index}_METRICS_PORT`;
}

/**
 * Where one replica serves its metrics: the first as readMetricsConfig says; another as its own variable says,
 * else on a free port or none when the component's variable says 0 or off, else on its default port.
 */
export function replicaMetricsConfig(env: Env, replica: Replica): MetricsConfig {
  const variable = replicaMetricsPortVariable(replica);
  if (replica.index === 1 || (env[variable]?.trim() ?? "") !== "")
    return configFrom(env, variable, replica.metricsPort);
  const shared = readMetricsConfig(env, replica.component.name);
  return shared.port === undefined || shared.port === 0 ? shared : { ...shared, variable, port: replica.metricsPort };
}

function configFrom(env: Env, variable: string, defaultPort: number): MetricsConfig {
  const raw = env[variable]?.trim() ?? "";
  const host = text(env, "METRICS_HOST", "127.0.0.1");
  if (raw === "") return { variable, port: defaultPort, host };
  if (raw === "off") return { variable, port: undefined, host };
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65_535) {
    throw new ConfigError(
      `${variable} must be a port number from 0 to 65535 (0: a free port) or "off" (no metrics), got "${raw}"`,
    );
  }
  return { variable, port: Number(raw), host };
}

/** A registry with prom-client's process and Node.js metrics, named `<component>_…`. */
export function createRegistry(component: Component["name"]): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${component}_` });
  return registry;
}

export interface MetricsServer {
  /** The port it listens on (the one the kernel picked, for 0). */
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `registry` at `/metrics` (and, given `ready`, `/ready`: 200 or 503); resolves once listening (undefined
 * when the config says off) and logs `metrics_listening` with the port. A port in use, or a METRICS_HOST that is not
 * this machine's, is a configuration error naming the variable.
 */
export async function serveMetrics(
  registry: Registry,
  config: MetricsConfig,
  log: Logger,
  options: { readonly ready?: () => boolean } = {},
): Promise<MetricsServer | undefined> {
  if (config.port === undefined) {
    log.info("metrics_off", { variable: config.variable });
    return undefined;
  }
  const { ready } = options;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const read = req.method === "GET" || req.method === "HEAD";
    if (ready !== undefined && path === "/ready" && read) {
      // For a container health check: 503 until the component says it serves, and again once it stops.
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ready\n" : "not ready\n");
      return;
    }
    if (path !== "/metrics" || !read) {
      res.writeHead(404, { "content-type": "text/plain" }).end("metrics are at GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? "" : body),
      (err: unknown) => {
        log.warn("metrics_failed", { error: err });
        res.writeHead(500, { "content-type": "text/plain" }).end("metrics could not be collected\n");
      },
    );
  });
  // A scraper keeps its connection open between scrapes; that must not hold the process at exit.
  server.unref();
  const port = await listen(server, config);
  const url = metricsUrl(config.host, port);
  log.info("metrics_listening", { port, url });
  return {
    port,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Listens; a failure that a setting causes is a ConfigError naming its variable, so the process exits 2 rather than
 * crash into a restart loop: the port's when the port is taken or privileged, METRICS_HOST when it is no address of
 * this machine or a name that does not resolve. Anything else is thrown as it is.
 */
function listen(server: Server, config: MetricsConfig): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRINUSE" || err.code === "EACCES") {
        reject(
          new ConfigError(
            `cannot serve metrics on ${config.host}:${config.port} (${err.code}): set ${config.variable} to a free port, 0 for any, or off`,
          ),
        );
      } else if (err.code === "EADDRNOTAVAIL" || err.syscall === "getaddrinfo") {
        reject(
          new ConfigError(
            `METRICS_HOST must be an address of this machine (127.0.0.1, or 0.0.0.0 for all of them), got "${config.host}" (${err.code})`,
          ),
        );
      } else reject(err);
    };
    server.once("error", failed);
    server.listen(config.port, config.host, () => {
      server.off("error", failed);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Where each process serves its metrics under this environment, as the `npm start` banner lists them. */
export function metricsBannerLines(env: Env, components: readonly Component[]): string[] {
  return components.flatMap(replicasOf).map((replica, i) => {
    const config = replicaMetricsConfig(env, replica);
    const where =
      config.port === undefined
        ? `off (${config.variable}=off)`
        : config.port === 0
          ? "a free port: see its metrics_listening log line"
          : metricsUrl(config.host, config.port);
    return `    ${i === 0 ? "metrics" : ""}`.padEnd(17) + `${replica.name.padEnd(9)}${where}`;
  });
}

function metricsUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}/metrics`;
}
