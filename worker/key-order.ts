/**
 * The one order every multi-row write of the worker's gives its rows in. A statement locks its rows in the order
 * given, and two workers writing the same rows in orders of their own (a rolling deploy always runs two; a batch
 * claimed while its first worker still runs it) would deadlock: so each sorts by the rows' conflict key.
 */

/** `rows` ordered by `key`, element by element: strings by UTF-16 code units, numbers by value. */
export function sortedBy<T>(rows: readonly T[], key: (row: T) => readonly (string | number)[]): T[] {
  return [...rows].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
    return 0;
  });
}
