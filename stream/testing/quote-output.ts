/**
 * Test support: a `quote_updated` output for `asset` at `bid` (= ask), as the engine emits it: each from a later
 * input than the one before (the hub drops a quote older than the one it holds).
 */
import type { QuoteOutput } from "../quotes.ts";

let nextInputMs = 1;

export const quoteOutput = (asset: string, bid: string, updatedAt = "2026-12-06T00:00:01.000Z"): QuoteOutput => {
  const inputId = `${nextInputMs++}-0`;
  return {
    type: "quote_updated",
    id: `${inputId}:0`,
    inputId,
    asset,
    market: `${asset}_USDC_PERP`,
    bid,
    ask: bid,
    updatedAt,
    source: "sim",
  };
};

/**
 * A `quote_updated` output of input `<ms>-0`, stamped at `ms`, as the engine emits it: its candle is the minute of
 * `ms`, and later quotes of the minute replace its close (the worker orders them by output id).
 */
export const quoteAtMs = (ms: number, asset: string, bid: string): QuoteOutput => ({
  type: "quote_updated",
  id: `${ms}-0:0`,
  inputId: `${ms}-0`,
  asset,
  market: `${asset}_USDC_PERP`,
  bid,
  ask: bid,
  updatedAt: new Date(ms).toISOString(),
  source: "sim",
});
