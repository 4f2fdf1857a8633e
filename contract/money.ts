/**
 * Exact money. Every amount is an integer number of minor units held in a JS number and kept far below
 * 2^53, so it is exact; no binary fraction ever touches money, prices or quantities.
 *
 * Scales: USD in micros (6 decimals); an asset's prices in ticks of 10^-priceDecimals and its quantities in
 * steps of 10^-quantityDecimals (see markets.ts). On the wire and in JSON every amount is a decimal string.
 *
 * Rounding rules (each one tested):
 * - Parsing never rounds. Digits beyond the scale are refused unless they are zeros ("1.50" at 1 decimal is 1.5).
 * - A leveraged trade's quantity is margin × leverage / price rounded DOWN to the quantity step: the user never
 *   holds more than the margin pays for.
 * - Price × quantity is exact by construction (priceDecimals + quantityDecimals ≤ 6), so notionals, PnL and spot
 *   totals need no rounding, and no charge is ever rounded; `validateAssets` refuses a configuration where one
 *   would have to be (it would then round against the user, by at most one minor unit).
 * - A liquidation level rounds in the user's favour: a trade is liquidated only when the rule holds exactly. What
 *   stays open after a partial close gets its level computed again from the margin and quantity it keeps, so the
 *   rule is exact for it too.
 * - The account summary's margin level (a percentage) rounds DOWN to 2 decimals, so it never shows an account
 *   safer than it is (functions/account-summary.ts).
 * - A partial close releases ⌊margin × steps closed / quantity⌋ of the margin; the rest of it stays with the open
 *   part, so every micro stays in exactly one place. A percent to close rounds down to the step.
 * - Formatting is exact and trims trailing zeros: 10000000000 micros → "10000", 430393 ticks at 2 → "4303.93".
 */

export const USD_DECIMALS = 6;
export const MICROS_PER_USD = 1_000_000;

/** Largest amount any balance, price, quantity or notional may hold, in minor units (1e9 USD in micros). */
export const MAX_UNITS = 1_000_000_000_000_000;

export type ParseFailure = "MALFORMED" | "TOO_MANY_DECIMALS" | "OUT_OF_RANGE";
export type ParsedUnits =
  { readonly ok: true; readonly units: number } | { readonly ok: false; readonly reason: ParseFailure };

const POW10: readonly number[] = Array.from({ length: 19 }, (_, i) => 10 ** i);

/**
 * Parses a non-negative decimal string ("4303.93", "0.5", "12") into integer units at `decimals`.
 * Refuses signs, exponents, spaces, "1.", ".5", non-zero digits beyond the scale and values above `max`.
 */
export function parseUnits(text: string, decimals: number, max: number = MAX_UNITS): ParsedUnits {
  const units = toUnits(text, decimals, max);
  if (units >= 0) return { ok: true, units };
  return units === INVALID_MALFORMED
    ? MALFORMED
    : units === INVALID_PRECISION
      ? TOO_MANY_DECIMALS
      : OUT_OF_RANGE_RESULT;
}

const INVALID_MALFORMED = -1;
const INVALID_PRECISION = -2;
const INVALID_RANGE = -3;
const MALFORMED: ParsedUnits = { ok: false, reason: "MALFORMED" };
const TOO_MANY_DECIMALS: ParsedUnits = { ok: false, reason: "TOO_MANY_DECIMALS" };
const OUT_OF_RANGE_RESULT: ParsedUnits = { ok: false, reason: "OUT_OF_RANGE" };

/** `parseUnits` for hot paths: the units, or a negative number when the text is not valid. Allocates nothing. */
export function toUnits(text: string, decimals: number, max: number = MAX_UNITS): number {
  const n = text.length;
  if (n === 0) return INVALID_MALFORMED;
  if (n > 40) return INVALID_RANGE;
  let whole = 0;
  let i = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    whole = whole * 10 + c;
  }
  if (i === 0) return INVALID_MALFORMED;
  if (whole > MAX_UNITS) return INVALID_RANGE;
  let frac = 0;
  let fracDigits = 0;
  if (i < n) {
    if (text.charCodeAt(i) !== 46 /* . */ || i === n - 1) return INVALID_MALFORMED;
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) return INVALID_MALFORMED;
      if (fracDigits < decimals) {
        frac = frac * 10 + c;
        fracDigits++;
      } else if (c !== 0) {
        return INVALID_PRECISION;
      }
    }
  }
  const scale = POW10[decimals] ?? 10 ** decimals;
  if (whole > Math.floor(max / scale)) return INVALID_RANGE;
  const units = whole * scale + frac * (POW10[decimals - fracDigits] ?? 1);
  return units > max ? INVALID_RANGE : units;
}

/** A number of decimals in words for messages, singular for one: "1 decimal", "2 decimals". */
export function decimalsWord(decimals: number): string {
  return decimals === 1 ? "1 decimal" : `${decimals} decimals`;
}

/** Formats integer units at `decimals` as an exact decimal string, trailing zeros trimmed, never exponent notation. */
export function formatUnits(units: number, decimals: number): string {
  if (units === 0) return "0";
  if (!Number.isSafeInteger(units)) throw new RangeError(`not a safe integer amount: ${units}`);
  const negative = units < 0;
  const abs = negative ? -units : units;
  const scale = POW10[decimals] ?? 10 ** decimals;
  const whole = Math.floor(abs / scale);
  let frac = abs - whole * scale;
  let text: string;
  if (frac === 0) {
    text = `${whole}`;
  } else {
    let digits = decimals;
    while (frac % 10 === 0) {
      frac /= 10;
      digits--;
    }
    const fracText = `${frac}`;
    text =
      fracText.length === digits
        ? `${whole}.${fracText}`
        : `${whole}.${"0".repeat(digits - fracText.length)}${fracText}`;
  }
  return negative ? `-${text}` : text;
}

/**
 * A decimal as Postgres gives a numeric, at its column's scale ("5.000000"), in its shortest exact form ("5"), as
 * formatUnits writes it; whatever its number of decimals.
 */
export function trimDecimal(text: string): string {
  const trimmed = text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  return trimmed === "-0" ? "0" : trimmed;
}

/**
 * `formatUnits` for a bigint: sums over an account (its balance plus every trade's margin and PnL) are exact in
 * bigints whatever their size, and are formatted the same way.
 */
export function formatBigUnits(units: bigint, decimals: number): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const scale = 10n ** BigInt(decimals);
  const fraction = (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  const text = fraction === "" ? `${abs / scale}` : `${abs / scale}.${fraction}`;
  return negative ? `-${text}` : text;
}

/**
 * a × b when it does not exceed `limit`, else undefined. Exact for whole numbers and any limit below 2^53: a true
 * product ≤ limit is computed exactly, and a larger one (≥ limit + 1, itself exact) rounds to a float > limit.
 */
export function mulWithin(a: number, b: number, limit: number = MAX_UNITS): number | undefined {
  const p = a * b;
  return p <= limit ? p : undefined;
}

/** ⌊a / b⌋ for safe non-negative integers, corrected for float division rounding. */
export function divFloor(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q--;
  else if ((q + 1) * b <= a) q++;
  return q;
}

/**
 * ⌊a × b / d⌋ for safe non-negative integers (d > 0), exact: in doubles while a × b stays below 2^53 (a float
 * product ≤ MAX_SAFE_INTEGER is exact, a larger true product rounds to ≥ 2^53 and fails the test), else in bigint.
 */
export function mulDivFloor(a: number, b: number, d: number): number {
  const p = a * b;
  if (p <= Number.MAX_SAFE_INTEGER) return divFloor(p, d);
  return Number((BigInt(a) * BigInt(b)) / BigInt(d));
}

export function formatUsd(micros: number): string {
  return formatUnits(micros, USD_DECIMALS);
}

/** USD micros from a decimal USD string, or undefined when it is not a valid non-negative amount. */
export function parseUsd(text: string): number | undefined {
  const micros = toUnits(text, USD_DECIMALS);
  return micros >= 0 ? micros : undefined;
}
