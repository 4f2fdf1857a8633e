/**
 * The processes the system runs, each as its own OS process: the one table that `npm start`'s supervisor, the npm
 * scripts, the Docker image and the SST services all follow (a test keeps them in step), so a component runs the
 * same way locally, in a container and in tests.
 */
export interface Component {
  readonly name: "engine" | "worker" | "poller" | "api" | "stream";
  /** TypeScript entry; the process runs its bundle, dist/<name>.mjs (build.ts). */
  readonly entry: string;
  readonly nodeFlags: readonly string[];
  /** The JSON log event that says the component is serving. */
  readonly readyEvent: string;
  /** Where it serves Prometheus metrics unless `<NAME>_METRICS_PORT` says otherwise (platform/metrics.ts). */
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
  {
    name: "engine",
    entry: "engine/main.ts",
    nodeFlags: ["--enable-source-maps", "--max-semi-space-size=64", "--initial-old-space-size=512"],
    readyEvent: "engine_ready",
    metricsPort: 9141,
  },
  {
    name: "worker",
    entry: "worker/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "start",
    metricsPort: 9142,
  },
  {
    name: "poller",
    entry: "poller/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "poller_running",
    metricsPort: 9143,
  },
  {
    name: "api",
    entry: "functions/server.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "listening",
    metricsPort: 9144,
  },
  {
    name: "stream",
    entry: "stream/main.ts",
    nodeFlags: ["--enable-source-maps"],
    readyEvent: "listening",
    metricsPort: 9145,
  },
];

export function componentNamed(name: Component["name"]): Component {
  const found = COMPONENTS.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no component "${name}" in platform/components.ts`);
  return found;
}

/** The command line a component runs with, after `node`: its bundle (built by `npm run build`). */
export function nodeArgs(component: Component): string[] {
  return [...component.nodeFlags, `dist/${component.name}.mjs`];
}
