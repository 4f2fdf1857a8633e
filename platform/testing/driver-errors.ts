/**
 * Postgres errors as the drivers build them (node_modules/pg, node_modules/@neondatabase/serverless) and sockets as
 * Node fails them, for the tests of what an error means (platform/postgres-errors.ts and its callers).
 */
import { NeonDbError } from "@neondatabase/serverless";
import pg from "pg";

/** An error as node-postgres builds it from a server's ErrorResponse. */
export function serverError(code: string, message: string): pg.DatabaseError {
  const err = new pg.DatabaseError(message, message.length, "error");
  err.code = code;
  return err;
}

/** A socket error as Node gives it. */
export function socketError(code: string, message = `connect ${code} 127.0.0.1:5432`): Error {
  return Object.assign(new Error(message), { code, errno: -1, syscall: "connect" });
}

/** What neon() throws for a 400: Postgres's fields copied onto the error. */
export function neonPostgresError(message: string, code: string): NeonDbError {
  const err = new NeonDbError(message);
  err.code = code;
  return err;
}

/** What neon() throws when fetch itself fails: the error fetch threw on `sourceError`. */
export function neonFetchFailed(source: Error): NeonDbError {
  const err = new NeonDbError(`Error connecting to database: ${String(source)}`);
  err.sourceError = source;
  return err;
}

/** What neon() throws for an answer other than 200 or 400. */
export const neonServerError = (status: number, body: string) =>
  new NeonDbError(`Server error (HTTP status ${status}): ${body}`);
