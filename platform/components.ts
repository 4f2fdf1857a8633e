/**
 * The processes the system runs, each as its own OS process: the one table that `npm start`'s supervisor, the npm
 * scripts, the Docker image and the SST services all follow (a test keeps them in step), so a component runs the
 * same way locally, in a container and in tests. A component may run as several processes, its replicas: the
 * engine runs two, a leader and a hot standby that takes over when the leader dies.
 */
import { hostname } from "node:os";

export interface Component {
  readonly name: "engine" | "worker" | "poller" | "api" | "stream";
  /** TypeScript entry; the process runs its bundle, dist/<name>.mjs (build.ts). */
  readonly entry: string;
  readonly nodeFlags: readonly string[];
  /** The JSON log event that says the component is serving. */
  readonly readyEvent: string;
  /** Where it serves Prometheus metrics unless `<NAME>_METRICS_PORT` says otherwise (platform/metrics.ts). */
  readonly metricsPort: number;
  /** How many processes of it `npm start` runs: the engine 2 (a leader and a hot standby), the others 1. */
  readonly replicas: number;
  /** The default metrics ports of replicas 2, 3, …, one each (replica 1 has metricsPort). */
  readonly moreMetricsPorts?: readonly number[];
  /**
   * Variables `npm start` gives each of its processes unless the environment sets them: what a process restarted in
   * its place must carry on with.
   */
  readonly replicaEnv?: (replica: Replica) => Readonly<Record<string, string>>;
}

/** One process of a component, as `npm start` runs it. */
export interface Replica {
  readonly component: Component;
  /** 1, 2, …: the order they start in. */
  readonly index: number;
  /** The process's name (its log file's too): the component's, or `engine-1`, `engine-2` when it runs several. */
  readonly name: string;
  /** Its default metrics port. */
  readonly metricsPort: number;
}

export const COMPONENTS: readonly Component[] = [
  // A bigger young generation: restores and bursts allocate many objects that survive, and each scavenge would
  // otherwise copy them again.
  // No full GC before the old generation holds 512 MB: a restore of 1M open trades builds a few hundred MB of objects
  // that all stay alive, so a full collection during it marks all of them for nothing, on the main thread (on a busy
  // machine the concurrent markers get little CPU), a pause of the order of 100 ms.
  // Not --min-semi-space-size: a full-size young generation from the start makes recovery faster but the live
  // leader's tick → closed-order latency worse.
  // A heap limit of its own, per thread (the leader's and its snapshotter's each hold the state), not one Node
  // derives from the memory it sees: 1M open trades need a few hundred MB in each, and a process peaks near 2.2 GB
  // with this limit (docs/benchmarks.md), within the deployed task's 4 GB (infra/plan.ts).
  {
    name: "engine",
    entry: "engine/main.ts",
    nodeFlags: [
      "--enable-source-maps",
      "--max-semi-space-size=64",
      "--initial-old-space-size=512",
      "--max-old-space-size=1536",
    ],
    // Logged by a leader once live, by a standby once it has caught up with the leader.
    readyEvent: "engine_ready",
    metricsPort: 9141,
    replicas: 2,
    moreMetricsPorts: [9146],
  },
  {
    name: "worker",
    entry: "worker/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "start",
    replicas: 1,
    metricsPort: 9142,
    // One consumer name across restarts: a restarted worker first finishes what the one before it left pending, so
    // the read models an answer depends on are written before any later answer goes out. Under a name of its own
    // (host and pid), it would answer newer requests while those entries waited to be claimed (WORKER_CLAIM_IDLE_MS).
    replicaEnv: (replica) => ({ WORKER_NAME: `${hostname()}:${replica.name}` }),
  },
  {
    name: "poller",
    entry: "poller/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "poller_running",
    replicas: 1,
    metricsPort: 9143,
  },
  {
    name: "api",
    entry: "functions/server.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "listening",
    replicas: 1,
    metricsPort: 9144,
  },
  {
    name: "stream",
    entry: "stream/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "listening",
    replicas: 1,
    metricsPort: 9145,
  },
];

export function componentNamed(name: Component["name"]): Component {
  const found = COMPONENTS.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no component "${name}" in platform/components.ts`);
  return found;
}

/** The processes `npm start` runs of a component, in the order it starts them. */
export function replicasOf(component: Component): Replica[] {
  const ports = [component.metricsPort, ...(component.moreMetricsPorts ?? [])];
  if (ports.length !== component.replicas) {
    throw new Error(`${component.name}: ${component.replicas} replicas but ${ports.length} metrics ports`);
  }
  return ports.map((metricsPort, i) => ({
    component,
    index: i + 1,
    name: component.replicas === 1 ? component.name : `${component.name}-${i + 1}`,
    metricsPort,
  }));
}

/** The command line a component runs with, after `node`: its bundle (built by `npm run build`). */
export function nodeArgs(component: Component): string[] {
  return [...component.nodeFlags, `dist/${component.name}.mjs`];
}
