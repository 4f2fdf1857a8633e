// What of the deployment can be checked without AWS: the containers and `sst dev` run the commands `npm start` runs,
// the image holds every file and package the build of those commands' bundles loads, each process gets the secrets it reads, and the API
// routes reach the right function. (The Lambda entry itself is tested with API Gateway events in
// functions/lambda.int.test.ts.)
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { readApiConfig } from "../functions/config.ts";
import { DOCS_UI_FILES, DOCS_UI_PACKAGE } from "../functions/docs-page.ts";
import { apiDocument, operationsOf } from "../functions/testing/document.ts";
import { COMPONENTS, componentNamed, nodeArgs } from "../platform/components.ts";
import { logFormat } from "../platform/log.ts";
import { metricsPortVariable, readMetricsConfig } from "../platform/metrics.ts";
import { THREADS } from "../platform/threads.ts";
import { POLLER_ENV, readPollerConfig } from "../poller/config.ts";
import { readStreamConfig } from "../stream/config.ts";
import { appUrlFor, functionPlainEnv, readDeploySettings, streamPlainEnv } from "./deploy-settings.ts";
import {
  API_ROUTES,
  CONTAINER_PLANS,
  containerDefinitions,
  FUNCTION_COPY_FILES,
  FUNCTION_RUNTIME,
  CONTAINERS,
  FUNCTION_SECRET_ENV,
  LAMBDA_HANDLER,
  SECRETS,
  containerCommand,
  devArgs,
  devCommand,
  streamLoadBalancer,
  streamUrlFrom,
  type ContainerName,
  type FunctionName,
} from "./plan.ts";
import { SECRET_SAMPLES } from "./testing/secret-samples.ts";

const root = resolve(import.meta.dirname, "..");
const read = (path: string) => readFileSync(resolve(root, path), "utf8");
const packageJson = JSON.parse(read("package.json")) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  engines: { node: string };
};
const dockerfile = read("Dockerfile");

/** Variables that hold credentials or point at production data: deployed, each must come from a secret. */
const SECRET_VARIABLES = [
  "DATABASE_URL",
  "REDIS_URL",
  "UPSTASH_REDIS_REST_URL",
  "UPSTASH_REDIS_REST_TOKEN",
  "JWT_SECRET",
  "RESEND_API_KEY",
];

describe("commands", () => {
  it("the npm scripts run each component as npm start does, from a fresh build", () => {
    for (const component of COMPONENTS) {
      expect(packageJson.scripts[component.name]).toBe(
        `npm run -s build && ${["node", ...nodeArgs(component)].join(" ")}`,
      );
    }
    expect(packageJson.scripts.build).toBe("node scripts/build.mjs");
  });

  it("each container runs its component's command, and sst dev its npm script", () => {
    for (const name of CONTAINERS) {
      const component = COMPONENTS.find((c) => c.name === name)!;
      expect(containerCommand(name)).toEqual(["node", ...nodeArgs(component)]);
      expect(devCommand(name)).toBe(`npm run ${name}`);
      expect(devArgs(name)).toMatchObject({ command: devCommand(name), directory: "." });
    }
  });

  it("each container serves its metrics on its component's port from the table, on the task's loopback only", () => {
    for (const name of CONTAINERS) {
      expect(readMetricsConfig(CONTAINER_PLANS[name].env, name)).toEqual({
        variable: metricsPortVariable(name),
        port: componentNamed(name).metricsPort,
        host: "127.0.0.1",
      });
    }
  });

  it("the image's default command is the engine's", () => {
    const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(cmd ?? "null")).toEqual(containerCommand("engine"));
  });
});

describe("the image", () => {
  const copied = [...dockerfile.matchAll(/^COPY (\S+) \.\/\S*$/gm)].map((m) => m[1]!);
  const ignored = read(".dockerignore")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map(globToRegExp);

  it("runs as a non-root user, installs no dev dependencies and builds the bundles the commands run", () => {
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^RUN node scripts\/build\.mjs$/m);
    for (const c of COMPONENTS) expect(nodeArgs(c)).toContain(`dist/${c.name}.mjs`);
    expect(dockerfile).not.toMatch(/^(ENV|ARG) \S*(SECRET|TOKEN|KEY|PASSWORD)/m);
  });

  it("runs the Node the functions run on Lambda, one the bundles' build target and package.json's engines admit", () => {
    const image = Number(/^FROM node:(\d+)-slim$/m.exec(dockerfile)?.[1]);
    expect(image).toBe(Number(/^nodejs(\d+)\.x$/.exec(FUNCTION_RUNTIME)?.[1]));
    // Node 20 reached its end of life in April 2026, and Lambda no longer updates functions on nodejs20.x.
    expect(image).toBeGreaterThanOrEqual(22);
    // The bundles also run on the oldest Node the project supports, which runs the tests (engines: "^20.19.0 || …").
    const target = Number(/\btarget: "node(\d+)"/.exec(read("platform/build.ts"))?.[1]);
    const oldest = Number(/^\^(\d+)\./.exec(packageJson.engines.node)?.[1]);
    expect(target).toBeLessThanOrEqual(oldest);
    expect(oldest).toBeLessThanOrEqual(image);
  });

  for (const entry of [...COMPONENTS.map((c) => c.entry), ...Object.values(THREADS), "scripts/build.mjs"]) {
    it(`holds every file and package ${entry} loads (to build it, or at run time)`, () => {
      const { files, packages } = loadClosure(entry);
      for (const file of files) {
        expect(
          copied.some((dir) => file === dir || file.startsWith(`${dir.replace(/\/$/, "")}/`)),
          `${file} is copied`,
        ).toBe(true);
        expect(
          ignored.some((re) => re.test(file)),
          `${file} is not in .dockerignore`,
        ).toBe(false);
      }
      // tsx and esbuild: the image builds the bundles with them.
      for (const name of [...packages, "tsx", "esbuild"])
        expect(packageJson.dependencies, `${name} in dependencies`).toHaveProperty([name]);
    });
  }
});

describe("secrets", () => {
  const containerSecrets = CONTAINERS.map((name) => CONTAINER_PLANS[name].secretEnv);
  const mappings = [FUNCTION_SECRET_ENV, ...containerSecrets];

  it("each variable gets the secret of the same name", () => {
    for (const mapping of mappings) {
      for (const [variable, secret] of Object.entries(mapping)) expect(secret).toBe(pascalCase(variable));
    }
  });

  it("every secret feeds some process", () => {
    const used = new Set(mappings.flatMap((m) => Object.values(m)));
    expect([...used].sort()).toEqual(Object.keys(SECRETS).sort());
  });

  it("the functions' deployed environment is a valid API configuration using Upstash, Resend and a fixed key", () => {
    let config: ReturnType<typeof readApiConfig> | undefined;
    const plain = functionPlainEnv(readDeploySettings({}), {
      appUrl: appUrlFor(undefined, "https://abc.execute-api.eu-west-1.amazonaws.com"),
      streamUrl: streamUrlFrom("http://lb-1.eu-west-1.elb.amazonaws.com"),
    });
    const seen = readingOf((env) => (config = readApiConfig(env)), deployedEnv(FUNCTION_SECRET_ENV, plain));
    if (config === undefined) throw new Error("not read");
    expect(config.redis.kind).toBe("upstash");
    expect(config.resend).toBeDefined(); // else sign-in links would be readable from the dev mailbox
    expect(config.jwtSecret).toBeDefined(); // the Lambda entry refuses to start without one
    expect(config.settings.secureCookies).toBe(true);
    // REDIS_URL is read only as the fallback when Upstash is not configured.
    const needed = SECRET_VARIABLES.filter((v) => seen.has(v) && v !== "REDIS_URL");
    expect(Object.keys(FUNCTION_SECRET_ENV)).toEqual(expect.arrayContaining(needed));
  });

  const reads: Record<ContainerName, readonly string[]> = {
    engine: variablesRead("engine/main.ts"),
    worker: variablesRead("worker/main.ts"),
    poller: POLLER_ENV,
    stream: variablesRead("stream/config.ts"),
  };

  it("each container gets every secret variable its entry reads", () => {
    for (const name of CONTAINERS) {
      expect(reads[name].length, `${name} reads some variables`).toBeGreaterThan(2);
      const needed = SECRET_VARIABLES.filter((v) => reads[name].includes(v));
      expect(Object.keys(CONTAINER_PLANS[name].secretEnv), name).toEqual(expect.arrayContaining(needed));
    }
    const poller = readPollerConfig(deployedEnv(CONTAINER_PLANS.poller.secretEnv, CONTAINER_PLANS.poller.env));
    expect(poller.feed).toBe("backpack");
  });

  it("each container's plain settings are ones it reads (its entry's configuration, metrics server or logger)", () => {
    const deploy = readDeploySettings({ CORS_ORIGINS: "https://app.example.com" });
    const logger = variablesRead("platform/log.ts");
    expect(logger).toContain("LOG_FORMAT");
    for (const name of CONTAINERS) {
      const plain = name === "stream" ? streamPlainEnv(deploy, "https://api.example.com") : CONTAINER_PLANS[name].env;
      const read = new Set([...reads[name], metricsPortVariable(name), "METRICS_HOST", ...logger]);
      if (name === "stream") {
        // CORS_ORIGINS is read by the shared reader the stream's configuration calls.
        const seen = readingOf((env) => readStreamConfig(env), deployedEnv(CONTAINER_PLANS.stream.secretEnv, plain));
        for (const v of seen) read.add(v);
      }
      expect(
        Object.keys(plain).filter((v) => !read.has(v)),
        name,
      ).toEqual([]);
    }
  });
});

describe("logs", () => {
  it("every container logs JSON lines, although SST gives it a terminal", () => {
    const deploy = readDeploySettings({});
    for (const name of CONTAINERS) {
      const plan = CONTAINER_PLANS[name];
      const plain = name === "stream" ? streamPlainEnv(deploy, "https://api.example.com") : plan.env;
      expect(plain.LOG_FORMAT, name).toBe("json");
      expect(logFormat(deployedEnv(plan.secretEnv, plain), true), name).toBe("json");
    }
  });

  it("every task's container runs without a terminal, and with its deploy plan's stop timeout", () => {
    // Part of what SST builds (sst/sst platform/src/components/aws/fargate.ts, createTaskDefinition).
    const built = {
      name: "x",
      command: ["node", "dist/x.mjs"],
      pseudoTerminal: true,
      linuxParameters: { initProcessEnabled: true },
      environment: [{ name: "LOG_FORMAT", value: "json" }],
    };
    const deployed = (name: ContainerName) =>
      JSON.parse(containerDefinitions(JSON.stringify([built]), CONTAINER_PLANS[name].deploy)) as object[];
    for (const name of CONTAINERS) {
      const stop = CONTAINER_PLANS[name].deploy?.stopTimeoutSeconds;
      const expected = { ...built, pseudoTerminal: false, ...(stop === undefined ? {} : { stopTimeout: stop }) };
      expect(deployed(name), name).toEqual([expected]);
    }
    expect(deployed("engine")).toEqual([expect.objectContaining({ stopTimeout: 120 })]);
    expect(deployed("worker")[0]).not.toHaveProperty("stopTimeout");
  });
});

describe("the stream's endpoint", () => {
  it("serves wss:// on 443 with a domain (port 80 redirects there), plain ws:// on 80 without", () => {
    expect(streamLoadBalancer("stream.example.com")).toEqual({
      domain: "stream.example.com",
      rules: [
        { listen: "443/https", forward: "3001/http" },
        { listen: "80/http", redirect: "443/https" },
      ],
      health: { "3001/http": { path: "/health", interval: "10 seconds" } },
      idleTimeoutSeconds: 60,
    });
    expect(streamLoadBalancer(undefined).rules).toEqual([{ listen: "80/http", forward: "3001/http" }]);
    expect(streamLoadBalancer("").rules).toEqual([{ listen: "80/http", forward: "3001/http" }]);
    // It forwards to the port the stream container listens on, where the health check asks.
    expect(CONTAINER_PLANS.stream.env.STREAM_PORT).toBe("3001");
  });

  it("under sst dev, hands out the address the stream's local process listens on, not SST's placeholder", () => {
    // sst dev runs the stream locally with the container's environment; only the one service with a load balancer
    // has a URL to give.
    expect(CONTAINERS.filter((name) => devArgs(name).url !== undefined)).toEqual(["stream"]);
    const local = readStreamConfig(deployedEnv(CONTAINER_PLANS.stream.secretEnv, CONTAINER_PLANS.stream.env));
    expect(streamUrlFrom(devArgs("stream").url!)).toBe(`ws://localhost:${local.port}/api/v1/stream`);
    expect(["0.0.0.0", "127.0.0.1", "localhost"]).toContain(local.host);
  });

  it("hands the functions the stream's URL as the WebSocket URL the API's config accepts", () => {
    expect(streamUrlFrom("https://stream.example.com/")).toBe("wss://stream.example.com/api/v1/stream");
    expect(streamUrlFrom("http://lb-1.eu-west-1.elb.amazonaws.com")).toBe(
      "ws://lb-1.eu-west-1.elb.amazonaws.com/api/v1/stream",
    );
  });
});

describe("the API", () => {
  it("the Lambda handler is an exported function", async () => {
    const [file, exportName] = LAMBDA_HANDLER.split(".") as [string, string];
    expect(existsSync(resolve(root, `${file}.ts`))).toBe(true);
    const module = (await import(resolve(root, `${file}.ts`))) as Record<string, unknown>;
    expect(typeof module[exportName]).toBe("function");
  });

  it("ships the files the API reference page reads beside each function's bundle, where Node resolves them", () => {
    const require = createRequire(resolve(root, LAMBDA_HANDLER.split(".")[0]!));
    for (const file of DOCS_UI_FILES) {
      const resolved = relative(root, require.resolve(`${DOCS_UI_PACKAGE}/${file}`));
      expect(FUNCTION_COPY_FILES).toContainEqual({ from: resolved, to: resolved });
      expect(existsSync(resolve(root, resolved)), resolved).toBe(true);
    }
    expect(packageJson.dependencies).toHaveProperty([DOCS_UI_PACKAGE]);
  });

  it("routes every documented endpoint to its group's function", () => {
    const endpoints = [
      ...operationsOf(apiDocument()).map((op) => {
        const [method, path] = op.split(" ") as [string, string];
        return { method, path };
      }),
      { method: "get", path: "/api/v1/openapi.json" },
      { method: "get", path: "/api/v1/docs" },
      ...DOCS_UI_FILES.map((file) => ({ method: "get", path: `/api/v1/docs/${file}` })),
    ];
    for (const { method, path } of endpoints) {
      const group = /^\/api\/v1\/(auth|trade|account)(\/|$)/.exec(path)?.[1];
      const fn = routeFor(method.toUpperCase(), path);
      expect(fn, path).toBeDefined();
      if (group !== undefined) expect(fn, path).toBe(group.charAt(0).toUpperCase() + group.slice(1));
    }
    expect(routeFor("POST", "/api/v1/unknown")).toBe("Account"); // the app's JSON 404, not API Gateway's
  });
});

/** API Gateway HTTP API route selection: exact routes, then the longest greedy `{proxy+}` prefix, then `$default`. */
function routeFor(method: string, path: string): FunctionName | undefined {
  const routes = Object.entries(API_ROUTES).flatMap(([fn, keys]) =>
    keys.map((key) => ({ fn: fn as FunctionName, key })),
  );
  const parsed = routes
    .filter((r) => r.key !== "$default")
    .map((r) => {
      const [m, p] = r.key.split(" ") as [string, string];
      return { ...r, method: m, path: p, greedy: p.endsWith("/{proxy+}") };
    });
  const methodOk = (m: string) => m === "ANY" || m === method;
  const exact = parsed.find((r) => !r.greedy && methodOk(r.method) && r.path === path);
  if (exact) return exact.fn;
  const greedy = parsed
    .filter(
      (r) =>
        r.greedy && methodOk(r.method) && path.startsWith(r.path.slice(0, -"{proxy+}".length)) && !path.endsWith("/"),
    )
    .sort((a, b) => b.path.length - a.path.length)[0];
  return greedy?.fn ?? routes.find((r) => r.key === "$default")?.fn;
}

/** The environment a process gets deployed, with plausible values standing in for the secrets. */
function deployedEnv(
  secretEnv: Readonly<Record<string, string>>,
  plain: Readonly<Record<string, string>>,
): Record<string, string> {
  return { ...Object.fromEntries(Object.keys(secretEnv).map((v) => [v, SECRET_SAMPLES[v] ?? "value"])), ...plain };
}

/** The variable names `reader` reads from `env`. */
function readingOf(reader: (env: Record<string, string>) => unknown, env: Record<string, string>): Set<string> {
  const seen = new Set<string>();
  reader(
    new Proxy(env, {
      get: (target, key: string) => {
        seen.add(key);
        return target[key];
      },
    }),
  );
  return seen;
}

/** Variable names an entry reads through the config readers (`url(env, "NAME", …)`) or as `env.NAME`. */
function variablesRead(file: string): string[] {
  const text = read(file);
  const names = [
    ...text.matchAll(/\b(?:url|text|wholeNumber|oneOf)\(env, "([A-Z][A-Z0-9_]*)"/g),
    ...text.matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g),
  ];
  return [...new Set(names.map((m) => m[1]!))];
}

/** The project files and npm packages a TypeScript entry loads at run time (`import type` is erased). */
function loadClosure(entry: string): { files: string[]; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    if (!/\.[mc]?ts$|\.mjs$/.test(file)) return; // a directory or data file the code reads (migrations/)
    const text = read(file);
    const specifiers = [
      ...[...text.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^;]*?\sfrom\s+)?"([^"]+)"/gms)].map((m) => m[1]!),
      ...[...text.matchAll(/\bimport\("([^"]+)"\)/g)].map((m) => m[1]!),
      ...[...text.matchAll(/new URL\("(\.[^"]+)", import\.meta\.url\)/g)].map((m) => m[1]!),
    ];
    for (const specifier of specifiers) {
      if (specifier.startsWith(".")) visit(relative(root, resolve(root, dirname(file), specifier)));
      else if (!specifier.startsWith("node:"))
        packages.add(specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!);
    }
  };
  visit(entry);
  expect(files.size).toBeGreaterThan(3);
  expect(packages.size).toBeGreaterThan(1);
  return { files: [...files], packages };
}

/** A .dockerignore line as a RegExp over paths relative to the context (`**`, `*`; a match covers what is below). */
function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .trim()
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*\*\//g, "(?:.*/)?")
    .replace(/\*/g, "[^/]*");
  return new RegExp(`^${body}(?:/.*)?$`);
}

function pascalCase(variable: string): string {
  return variable
    .toLowerCase()
    .split("_")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");
}
