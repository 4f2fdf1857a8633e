/**
 * Test support: a fresh, uniquely named Postgres database per test file, created and dropped through the
 * containers' driver (platform/postgres.ts); `url` lets a test connect the functions' driver too. The server comes from
 * `TEST_DATABASE_ADMIN_URL` (a database the tests may connect to in order to create others), which the test run's
 * global setup sets: the machine's Postgres, or one it started (global-setup.ts).
 */
import { randomBytes } from "node:crypto";
import { createLogger, type Logger } from "../log.ts";
import { connectPostgres, type Postgres } from "../postgres.ts";
import { TEST_DATABASE_ADMIN_URL } from "./test-servers.ts";

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly db: Postgres;
  /** Log lines written by the database's logger, parsed. */
  readonly logLines: Record<string, unknown>[];
  readonly log: Logger;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = TEST_DATABASE_ADMIN_URL;
  const logLines: Record<string, unknown>[] = [];
  const log = createLogger("test", {
    level: "debug",
    sink: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const admin = await connectPostgres(adminUrl, log, { maxConnections: 1 });
  // Random and lower-case, so the name needs no quoting and parallel test files never collide.
  const name = `t_${randomBytes(6).toString("hex")}`;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.close();
    throw err;
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = await connectPostgres(url.toString(), log);
  return {
    name,
    url: url.toString(),
    db,
    logLines,
    log,
    drop: async () => {
      await db.close();
      // FORCE ends connections a failed test may have left behind.
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.close();
    },
  };
}
