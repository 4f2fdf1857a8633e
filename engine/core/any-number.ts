/**
 * Number fields of the objects the engine holds in bulk (trades, pending orders, trailing stops), made so that no
 * value stored in them ever changes those objects' shape (V8's hidden class). Apart from state.ts so that the
 * trailing stops can use it without an import cycle.
 */

/**
 * Not a number: a field first set to it takes any number after, small integer or not (V8's "tagged"
 * representation). A field that has held only small integers becomes a double at the first value that is not one
 * (past 2^31, or arithmetic on one, such as a price parsed from text), which deprecates the shape of every object
 * made before, each migrated on its next access: a restore reads amounts and prices as small integers, so after one
 * of 1M trades the first live open made the next scan of all trades (a snapshot) take seconds instead of tens of
 * milliseconds. Not born as doubles, like the accounts' USD fields: a double field is a box of its own per object.
 */
export const ANY_NUMBER = null as unknown as number;

/** An object type with its readonly fields writable: for a constructor that sets them after the literal. */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };
