/** Test support: a `quote_updated` output for `asset` at `bid` (= ask), as the engine emits it. */
import type { QuoteOutput } from "../quotes.ts";

export const quoteOutput = (asset: string, bid: string, updatedAt = "2026-12-06T00:00:01.000Z"): QuoteOutput => ({
  type: "quote_updated",
  id: "1-0:0",
  inputId: "1-0",
  asset,
  market: `${asset}_USDC_PERP`,
  bid,
  ask: bid,
  updatedAt,
  source: "sim",
});
