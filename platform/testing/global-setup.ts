/**
 * vitest globalSetup: builds the bundles the spawned processes run (platform/build.ts), then finds or starts the
 * Redis and Postgres of a test run, with the logic `npm start` uses
 * (platform/local-redis.ts and platform/local-postgres.ts), so `npm test` works on a machine with neither. It runs
 * before any test worker starts, and the workers (and the processes tests spawn) inherit its environment: it sets
 * `REDIS_URL` and `TEST_DATABASE_ADMIN_URL` there, and also `provide`s them (`inject("testServers")`).
 *
 * Unlike `npm start`, which prefers servers of its own in its data folder, tests prefer the servers already running
 * (`prefer: "running"`): they are faster to use than to start, and every test keeps to its own key prefix or database.
 * - Redis: `REDIS_URL`, else one answering at `LOCAL_REDIS_PROBE_URL` (default 127.0.0.1:6379), else a private
 *   redis-server without persistence on a free port in a temporary folder.
 * - Postgres: `TEST_DATABASE_ADMIN_URL` (it must answer), else one answering at `LOCAL_POSTGRES_PROBE_URL` (default
 *   postgres://postgres@127.0.0.1:5432/postgres), else the embedded Postgres without fsync, same way.
 *
 * Pointing both probe variables at a port where nothing listens runs the suite on servers of its own.
 * What it started, it stops after the run.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { buildBundles } from "../build.ts";
import { ensurePostgres, postgresProblem } from "../local-postgres.ts";
import { ensureRedis } from "../local-redis.ts";
import { foreign, type InfraOptions, type LocalServer } from "../local-servers.ts";
import { createLogger } from "../log.ts";

export interface TestServers {
  readonly redisUrl: string;
  readonly databaseAdminUrl: string;
  /** Which of the two this run started itself. */
  readonly started: readonly ("redis" | "postgres")[];
}

declare module "vitest" {
  export interface ProvidedContext {
    testServers: TestServers;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Tests that spawn the processes run their bundles, as `npm start` does: built from the sources under test.
  await buildBundles();
  const env = process.env;
  const quiet = createLogger("test-servers", { level: "warn" });
  // mkdtemp makes it 0700; as root, the `postgres` user must be able to reach its folder inside.
  const dataDir = await mkdtemp(join(tmpdir(), "paper-broker-test-"));
  await chmod(dataDir, 0o755);
  const ours = { dataDir, log: quiet, prefer: "running", preferredPort: 0, durable: false } as const;
  const servers: LocalServer[] = [];
  const teardown = async () => {
    for (const server of servers.reverse()) await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    const redis = await ensureRedis({ ...ours, env });
    servers.push(redis);
    const postgres = await findOrStartPostgres(env, ours);
    servers.push(postgres);

    const provided: TestServers = {
      redisUrl: redis.url,
      databaseAdminUrl: postgres.url,
      started: [...(redis.started ? ["redis" as const] : []), ...(postgres.started ? ["postgres" as const] : [])],
    };
    process.env.REDIS_URL = provided.redisUrl;
    process.env.TEST_DATABASE_ADMIN_URL = provided.databaseAdminUrl;
    project.provide("testServers", provided);
    createLogger("test-servers").info("test_servers", {
      redis: where(provided.redisUrl),
      postgres: where(provided.databaseAdminUrl),
      started: provided.started,
    });
    return teardown;
  } catch (err) {
    await teardown();
    throw err;
  }
}

async function findOrStartPostgres(env: NodeJS.ProcessEnv, ours: Omit<InfraOptions, "env">): Promise<LocalServer> {
  const configured = env.TEST_DATABASE_ADMIN_URL?.trim();
  if (configured) {
    const problem = await postgresProblem(configured, ours.log);
    if (problem !== undefined) throw new Error(`TEST_DATABASE_ADMIN_URL is set but does not answer: ${problem}`);
    return foreign(configured);
  }
  // Not the app's DATABASE_URL: the tests need a server where they may create databases.
  return ensurePostgres({
    ...ours,
    env: { PATH: env.PATH, LOCAL_POSTGRES_PROBE_URL: env.LOCAL_POSTGRES_PROBE_URL },
    database: "postgres",
  });
}

function where(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port}`;
}
