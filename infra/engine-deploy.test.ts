// The engine's deployment keeps a hot standby and hands over on a rolling deploy (infra/plan.ts ENGINE_DEPLOY): two
// tasks, new tasks started and healthy before old ones stop, a health check that asks the engine's /ready, and time
// for the old leader's final snapshot after SIGTERM. The health check command is run here against local servers.
// The other services' deploys: the worker and poller stop their old task before the new one starts (never two at
// once), and the worker's fixed name.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { componentNamed } from "../platform/components.ts";
import {
  CONTAINER_PLANS,
  CONTAINERS,
  ENGINE_DEPLOY,
  engineDeploy,
  readyCheckCommand,
  STOP_THEN_START_DEPLOY,
  WORKER_NAME,
} from "./plan.ts";

describe("the engine's deployment", () => {
  const engine = CONTAINER_PLANS.engine;

  it("runs two tasks, a leader and a hot standby, with the rolling deploy that hands over", () => {
    expect(engine.tasks).toBe(2);
    expect(engine.deploy).toBe(ENGINE_DEPLOY);
  });

  it("starts the new tasks before it stops an old one, and keeps all of them healthy meanwhile", () => {
    expect(ENGINE_DEPLOY.minimumHealthyPercent).toBe(100);
    expect(ENGINE_DEPLOY.maximumPercent).toBe(200);
    // Room for a full new set beside the old one (ECS rounds the maximum down).
    expect(Math.floor((engine.tasks * ENGINE_DEPLOY.maximumPercent) / 100)).toBe(2 * engine.tasks);
  });

  it("counts a task healthy once its engine answers /ready on its metrics port, on the task's loopback", () => {
    expect(ENGINE_DEPLOY.health.command).toEqual(readyCheckCommand(componentNamed("engine").metricsPort));
    const [mode, shell, flag, script] = ENGINE_DEPLOY.health.command;
    expect([mode, shell, flag]).toEqual(["CMD", "bash", "-c"]);
    expect(script).toContain(`/dev/tcp/127.0.0.1/${componentNamed("engine").metricsPort} `);
    expect(script).toContain("GET /ready ");
    // Bash comes with Debian's images (node:*-slim), not with Alpine's.
    const base = /^FROM (\S+)$/m.exec(readFileSync(resolve(import.meta.dirname, "../Dockerfile"), "utf8"))?.[1];
    expect(base).toMatch(/^node:\d+-(slim|bookworm|bullseye)/);
  });

  it("finds /ready where the engine's metrics settings put it, and refuses settings that serve none", () => {
    const script = (env: Record<string, string>) => engineDeploy(env).health.command[3];
    expect(script({ ENGINE_METRICS_PORT: "9200" })).toContain("/dev/tcp/127.0.0.1/9200 ");
    expect(script({ METRICS_HOST: "0.0.0.0" })).toContain("/dev/tcp/127.0.0.1/9141 ");
    expect(script({ METRICS_HOST: "::" })).toContain("/dev/tcp/127.0.0.1/9141 ");
    expect(script({ METRICS_HOST: "::1", ENGINE_METRICS_PORT: "9300" })).toContain("/dev/tcp/::1/9300 ");
    expect(() => engineDeploy({ ENGINE_METRICS_PORT: "off" })).toThrow(
      /ENGINE_METRICS_PORT=off serves no metrics server.*never become healthy/,
    );
    expect(() => engineDeploy({ ENGINE_METRICS_PORT: "0" })).toThrow(/ENGINE_METRICS_PORT=0 takes a free port/);
    expect(() => engineDeploy({ ENGINE_METRICS_PORT: "nine" })).toThrow(/ENGINE_METRICS_PORT must be a port/);
    // The deployed engine's own settings are the ones the check follows.
    expect(ENGINE_DEPLOY).toEqual(engineDeploy(engine.env));
  });

  it("gives a restore minutes before failed checks count, within ECS's limits", () => {
    const { startPeriodSeconds, intervalSeconds, timeoutSeconds, retries } = ENGINE_DEPLOY.health;
    expect(startPeriodSeconds).toBeGreaterThanOrEqual(120);
    expect(startPeriodSeconds).toBeLessThanOrEqual(300);
    expect(intervalSeconds).toBeGreaterThanOrEqual(5);
    expect(intervalSeconds).toBeLessThanOrEqual(300);
    expect(timeoutSeconds).toBeGreaterThanOrEqual(2);
    expect(timeoutSeconds).toBeLessThan(intervalSeconds);
    expect(retries).toBeGreaterThanOrEqual(1);
    expect(retries).toBeLessThanOrEqual(10);
  });

  it("leaves the old leader time to hand over and save its final snapshot, within Fargate's limit", () => {
    // A final snapshot of the full book takes a few seconds here; ECS's default (30 s) leaves too little margin for
    // a slower vCPU and a database across the network. Fargate rejects more than 120 s.
    expect(ENGINE_DEPLOY.stopTimeoutSeconds).toBeGreaterThanOrEqual(60);
    expect(ENGINE_DEPLOY.stopTimeoutSeconds).toBeLessThanOrEqual(120);
  });
});

describe("each service's deploy", () => {
  it("hands over for the engine, stops then starts the worker and poller, and leaves the stream to ECS's", () => {
    expect(Object.fromEntries(CONTAINERS.map((name) => [name, CONTAINER_PLANS[name].deploy]))).toEqual({
      engine: ENGINE_DEPLOY,
      worker: STOP_THEN_START_DEPLOY,
      poller: STOP_THEN_START_DEPLOY,
      stream: undefined,
    });
  });

  it("stops a one-task service's old task before its new one starts: never two at once, even for a moment", () => {
    const stopThenStart = CONTAINERS.filter((name) => CONTAINER_PLANS[name].deploy === STOP_THEN_START_DEPLOY);
    expect(stopThenStart.length).toBeGreaterThan(0);
    for (const name of stopThenStart) {
      const { tasks, deploy } = CONTAINER_PLANS[name];
      expect(tasks, name).toBe(1);
      // ECS rounds the maximum down and the minimum up (ECS API reference, DeploymentConfiguration).
      expect(Math.floor((tasks * deploy!.maximumPercent) / 100), `${name}: tasks running at most`).toBe(1);
      expect(Math.ceil((tasks * deploy!.minimumHealthyPercent) / 100), `${name}: tasks kept healthy`).toBe(0);
    }
  });

  it("names the worker, so its replacement takes up the name and first finishes what the last one left pending", () => {
    const { env, tasks, deploy } = CONTAINER_PLANS.worker;
    // Unset, the name is the host's and pid's: new for each Fargate task (a new host, pid 1).
    expect(env.WORKER_NAME).toBe(WORKER_NAME);
    expect(WORKER_NAME).toMatch(/^[a-z][a-z0-9-]*$/);
    // One name for one task that never runs beside its replacement.
    expect(tasks).toBe(1);
    expect(deploy).toBe(STOP_THEN_START_DEPLOY);
  });
});

describe("the ready check command", () => {
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  });

  /** A stand-in for the metrics server: `/ready` answers `status`, any other path 200. */
  async function serving(status: number): Promise<number> {
    const server = createServer((req, res) => {
      res.writeHead(req.url === "/ready" ? status : 200, { "content-type": "text/plain" }).end("x\n");
    });
    servers.push(server);
    await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
    return (server.address() as AddressInfo).port;
  }

  /** Runs the command as ECS's CMD form does (the arguments after "CMD"); resolves with its exit code. */
  function run(command: readonly string[]): Promise<number | null> {
    const [mode, file, ...args] = command;
    expect(mode).toBe("CMD");
    return new Promise((exited, failed) => {
      const child = spawn(file!, args, { stdio: "ignore", timeout: 5_000 });
      child.on("error", failed);
      child.on("exit", exited);
    });
  }

  it("succeeds when /ready answers 200", async () => {
    expect(await run(readyCheckCommand(await serving(200)))).toBe(0);
  });

  it("asks the port the engine's settings give", async () => {
    const port = await serving(200);
    expect(await run(engineDeploy({ ENGINE_METRICS_PORT: String(port) }).health.command)).toBe(0);
    expect(await run(engineDeploy({ ENGINE_METRICS_PORT: String(port), METRICS_HOST: "0.0.0.0" }).health.command)).toBe(
      0,
    );
  });

  it("fails when /ready answers 503 (restoring, catching up, or stopping)", async () => {
    expect(await run(readyCheckCommand(await serving(503)))).not.toBe(0);
  });

  it("fails when nothing listens on the port", async () => {
    const port = await serving(200);
    await new Promise((done) => servers.pop()!.close(done));
    expect(await run(readyCheckCommand(port))).not.toBe(0);
  });
});
