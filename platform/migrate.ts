/**
 * Schema migrations: the files `NNN_name.sql` in a folder (default: the repository's `migrations/`), applied in
 * filename order, each at most once, each in its own transaction together with its row in `schema_migrations`, so a
 * file is either wholly applied and recorded or not at all. Every process may call `migrate` at start: concurrent
 * starters are serialized by a transaction-scoped advisory lock, and whoever comes second finds the work done.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "./log.ts";
import type { Postgres, Queryable } from "./postgres.ts";

export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL("../migrations/", import.meta.url));

/** Any fixed 64-bit key, the same in every process: it names "the migration lock" for pg_advisory_xact_lock. */
const MIGRATION_LOCK_KEY = "7243019188271345001";

const FILE_NAME = /^\d{3,}_[a-z0-9_]+\.sql$/;

/** Applies what has not been applied yet and returns the names of the files it applied, in order. */
export async function migrate(db: Postgres, log: Logger, dir: string = DEFAULT_MIGRATIONS_DIR): Promise<string[]> {
  const files = await migrationFiles(dir);
  await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  });

  const applied: string[] = [];
  for (const name of files) {
    const started = performance.now();
    const sql = await readFile(join(dir, name), "utf8");
    const didApply = await db
      .transaction(async (tx) => {
        // Held until this transaction ends: a concurrent starter waits here, then sees the row written below.
        await lock(tx);
        const done = await tx.query("SELECT 1 FROM schema_migrations WHERE name = $1", [name]);
        if (done.rowCount !== 0) return false;
        // No parameters: the simple query protocol, which runs a file of several statements.
        await tx.query(sql);
        await tx.query("INSERT INTO schema_migrations (name) VALUES ($1)", [name]);
        return true;
      })
      .catch((err: unknown) => {
        log.error("migration_failed", { name, error: err });
        throw new Error(`migration ${name} failed: ${(err as Error).message}`, { cause: err });
      });
    if (didApply) {
      applied.push(name);
      log.info("migration_applied", { name, ms: Math.round(performance.now() - started) });
    }
  }
  log.info("migrations_done", { applied: applied.length, total: files.length });
  return applied;
}

/**
 * The folder's migration files in apply order. A `.sql` file whose name does not fit `NNN_name.sql` is an error
 * rather than silently skipped, so a typo cannot leave a schema change out.
 */
export async function migrationFiles(dir: string): Promise<string[]> {
  const sqlFiles = (await readdir(dir)).filter((n) => n.endsWith(".sql"));
  const bad = sqlFiles.filter((n) => !FILE_NAME.test(n));
  if (bad.length > 0) throw new Error(`migration files must be named NNN_name.sql: ${bad.join(", ")}`);
  // Plain code-unit order on equal-width numbers is numeric order; unequal widths would sort 10_ before 9_.
  const widths = new Set(sqlFiles.map((n) => n.indexOf("_")));
  if (widths.size > 1) throw new Error(`migration numbers must all have the same width: ${sqlFiles.join(", ")}`);
  return sqlFiles.sort();
}

async function lock(tx: Queryable) {
  await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [MIGRATION_LOCK_KEY]);
}
