/**
 * The Redis and Postgres the tests use. Under vitest both variables are always set, by global-setup.ts (a server it
 * found or one it started); the defaults only serve benchmarks run on their own against the machine's servers.
 */
import { DEFAULT_LOCAL_POSTGRES_ADMIN_URL, DEFAULT_LOCAL_REDIS_URL } from "../local-servers.ts";

export const TEST_REDIS_URL = process.env.REDIS_URL || DEFAULT_LOCAL_REDIS_URL;

/** A database the tests may connect to in order to create their own (test-database.ts). */
export const TEST_DATABASE_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL || DEFAULT_LOCAL_POSTGRES_ADMIN_URL;
