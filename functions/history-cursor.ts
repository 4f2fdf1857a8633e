/**
 * The keyset cursor of the paginated histories (closes, spot orders, entry orders): the last row's time and id, as
 * base64url JSON. The next page is the rows strictly before it in (time, id) order, newest first. Anything this
 * API did not issue is 400 INVALID_CURSOR.
 */
import { ApiError } from "./errors.ts";

export function encodeCursor(at: string, id: string): string {
  return Buffer.from(JSON.stringify([at, id])).toString("base64url");
}

export function decodeCursor(cursor: string): { at: string; id: string } {
  try {
    const value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown;
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === "string" &&
      typeof value[1] === "string" &&
      !Number.isNaN(Date.parse(value[0])) &&
      /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value[0]) &&
      /^[A-Za-z0-9._-]{1,64}$/.test(value[1])
    ) {
      return { at: value[0], id: value[1] };
    }
  } catch {
    // falls through: not a cursor this API issued
  }
  throw new ApiError("INVALID_CURSOR");
}
