/**
 * The keyset cursor of the paginated histories (closes, spot orders, entry orders): the last row's time and id, as
 * base64url JSON. The next page is the rows strictly before that row, newest first. `historyPage` runs that query for
 * any of them.
 *
 * Rows of one millisecond (one input's outputs, or several inputs logged within it) come in the order the engine made
 * them, not in the text order of their ids ("O0-10" < "O0-9" as text): each table names that order as SQL over its
 * columns (`HistoryTable.order`: the numbers in an engine id or an output id), then the id breaks any tie left. The
 * cursor stays (time, id): the next page looks up the order of the row it names (its primary key) and takes the rows
 * before it, so no row is skipped or repeated from page to page. A cursor naming no row of the user's (hand-made)
 * resumes before its time's millisecond. Numbers are read with regular expressions, never cast from raw text, so an
 * id of another shape cannot fail a page (it sorts as -1).
 *
 * No index holds that order: the query reads the (user, time) index newest first and sorts only the rows of each
 * millisecond (an incremental sort), stopping once the page is full.
 *
 * A cursor is not signed: every query is bounded to the session's user, so a hand-made cursor can only start a page
 * of that user's own history somewhere else. What is refused (400 INVALID_CURSOR) is one that does not decode to a
 * position: a time and a row id. The history query's schema decodes it (schemas.ts), so a refused cursor fails with
 * the rest of the query, before the request is counted against the history's rate limit.
 */
import type { Queryable, Row } from "../platform/postgres.ts";

/** Where a page starts: the (time, id) of the previous page's last row. */
export interface CursorPosition {
  readonly at: string;
  readonly id: string;
}

/** A history table: its columns as selected, and the time, order within a millisecond and id it is paged by. */
export interface HistoryTable {
  readonly table: string;
  readonly columns: string;
  readonly time: string;
  /** The primary key: the cursor's id. */
  readonly id: string;
  /** SQL expressions over a row's columns, greatest for the row the engine made last within a millisecond. */
  readonly order: readonly string[];
}

/**
 * The order of engine ids `<letter><shard>-<seq>` (P0-7, O0-12): by shard, then seq, which the engine hands out in
 * the order it applies instructions. Entry orders and spot orders take theirs when placed, or executed.
 */
export function engineIdOrder(column: string): string[] {
  return [digits(column, "^[A-Z]([0-9]+)-"), digits(column, "^[A-Z][0-9]+-([0-9]+)$")];
}

/** The order of output ids `<ms>-<seq>:<n>`: the order the engine wrote its outputs in. */
export function outputIdOrder(column: string): string[] {
  return [digits(column, "^([0-9]+)-"), digits(column, "^[0-9]+-([0-9]+):"), digits(column, ":([0-9]+)$")];
}

/** The digits `pattern`'s group finds in `column`, as a number; -1 when it finds none. */
function digits(column: string, pattern: string): string {
  return `coalesce(substring(${column} from '${pattern}')::numeric, -1)`;
}

/**
 * One page of a user's history, newest first: at most `limit` views, and the cursor of the next page (null on the
 * last). One row more than the page is read to know whether another page follows.
 */
export async function historyPage<R extends Row, V>(
  db: Queryable,
  t: HistoryTable,
  userId: string,
  limit: number,
  after: CursorPosition | undefined,
  view: (row: R) => V,
  key: (v: V) => [at: string, id: string],
): Promise<{ page: V[]; nextCursor: string | null }> {
  const order = [...t.order, t.id];
  // The cursor row's order, looked up by its id; NULL when there is none, which leaves only earlier milliseconds.
  const cursorOrder = t.order.map(
    (expression) => `(SELECT ${expression} FROM ${t.table} WHERE user_id = $1 AND ${t.id} = $4)`,
  );
  // `time <= cursor` alone bounds the index scan; the row comparison then picks within the cursor's millisecond.
  const before = `AND ${t.time} <= $3::timestamptz
        AND (${t.time}, ${order.join(", ")}) < ($3::timestamptz, ${[...cursorOrder, "$4"].join(", ")})`;
  const { rows } = await db.query<R>(
    `SELECT ${t.columns}
       FROM ${t.table}
      WHERE user_id = $1 ${after === undefined ? "" : before}
      ORDER BY ${t.time} DESC, ${order.map((o) => `${o} DESC`).join(", ")}
      LIMIT $2`,
    after === undefined ? [userId, limit + 1] : [userId, limit + 1, after.at, after.id],
  );
  const page = rows.slice(0, limit).map(view);
  const last = page.at(-1);
  return { page, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(...key(last)) : null };
}

export function encodeCursor(at: string, id: string): string {
  return Buffer.from(JSON.stringify([at, id])).toString("base64url");
}

/** A time as encodeCursor is given it (toISOString): four-digit year, milliseconds, UTC. */
const CURSOR_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
/** 0001-01-01: Postgres has no year 0, which toISOString writes as 0000 (1 BC). */
const FIRST_CURSOR_MS = Date.parse("0001-01-01T00:00:00.000Z");

/**
 * The position `cursor` names, or undefined when it names none. The time must be one encodeCursor could have
 * written, to the character: Date.parse reads more than Postgres's timestamptz does (it rolls February 30 over to
 * March 2 and takes year 0), and a time Postgres refuses would fail the page's query rather than the request.
 */
export function decodeCursor(cursor: string): CursorPosition | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown;
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === "string" &&
      typeof value[1] === "string" &&
      CURSOR_TIME.test(value[0]) &&
      Date.parse(value[0]) >= FIRST_CURSOR_MS &&
      new Date(Date.parse(value[0])).toISOString() === value[0] &&
      /^[A-Za-z0-9._-]{1,64}$/.test(value[1])
    ) {
      return { at: value[0], id: value[1] };
    }
  } catch {
    // falls through: not base64url JSON
  }
  return undefined;
}
