/**
 * Where an in-process sim feed's prices start: per market, the quote the engine holds once it has applied the log,
 * so a restarted poller (or one that falls back to sim) continues the price series. Starting from the sim's fixed
 * levels instead would put a gap in the log that never happened, and the engine would fire stops, liquidations and
 * pending orders on it.
 *
 * The engine's quote is a function of the log: the market's newest `price_update` that the engine accepts (it
 * ignores a malformed, crossed, out-of-range or future-stamped one and keeps the one before, engine/core/quotes.ts).
 * So the log's tail is the truth and is read first, newest to oldest, with the same checks, but one: an update the
 * engine ignored as more than 5 s behind the market's newest (a write the publisher gave up on, run late) is taken
 * here if it is the market's last entry. That needs the log's order to differ from the stamps' and the late write to
 * come after the poller's last heartbeat of that market (about one a second); the sim would then start there. The quotes read model is
 * not: it is the worker's copy of the engine's `quote_updated` outputs and lags the log by whatever the engine and
 * worker have not applied yet (a lot, when they were down too); the engine would reach the log's newer quotes before
 * the sim's first frame, so starting from the read model would jump back. The read model serves only a market whose
 * last `price_update` is not in the scanned tail (the engine trims the log below its snapshots; a long tail is not
 * read to its start): that quote was applied long ago, so the read model holds it. A market in neither starts at
 * its level.
 *
 * Each quote found in the log also tells when its top began (`changedAtUs`: the exchange time of the entry from which
 * the market's bid, ask and source stand), so the scan goes on past a market's last entry, within the same bound, to
 * the entry before. When the scan ends first (the log's start, which the engine trims below its snapshots, or the
 * bound), the oldest entry read with that top stands in: the top stood at least from then. A live start refuses a
 * first frame stamped earlier, as a reconnect does (ordering.ts).
 */
import type { Redis } from "ioredis";
import type { AssetConfig } from "../contract/markets.ts";
import type { Keyspace } from "../contract/names.ts";
import { decodeInputFields } from "../contract/stream-fields.ts";
import { parseInputId } from "../engine/core/step.ts";
import { aheadOfEngine } from "./ordering.ts";
import type { PriceSource } from "./publisher.ts";
import { quoteTicks, type StartQuote } from "./sim-feed.ts";

export interface LastQuote extends StartQuote {
  /** Where it was found: the log's tail, or the quotes read model. */
  readonly from: "log" | "read_model";
  /**
   * The feed it came from (the entry's `source`): a live start after a `sim` one jumps to the market (price-feed.ts).
   * Undefined for a read model view without a valid one.
   */
  readonly source: PriceSource | undefined;
  /**
   * The exchange time (µs) of the log entry from which the market's last top stands (the same bid, ask and source
   * since): when its book last moved, as far as the log tells; the oldest entry read with that top when the scan ends
   * first. A live start refuses a first frame stamped earlier (ordering.ts). Undefined for a read model view.
   */
  readonly changedAtUs?: string | undefined;
}

export interface LastQuoteOptions {
  /** The most log entries read (newest first) before the read model is asked; default 10,000. */
  readonly scanEntries?: number;
  /** Entries per XREVRANGE; default 1,000. */
  readonly pageSize?: number;
}

/** The last valid quote of each of `markets` that the system holds; a market without one is absent. */
export async function readLastQuotes(
  redis: Redis,
  keys: Pick<Keyspace, "input" | "quotesKey">,
  markets: readonly AssetConfig[],
  options: LastQuoteOptions = {},
): Promise<Map<string, LastQuote>> {
  const assets = new Map(markets.map((asset) => [asset.market, asset]));
  const found = new Map<string, LastQuote>();
  const take = (market: unknown, bid: unknown, ask: unknown, from: LastQuote["from"], source: unknown) => {
    const asset = typeof market === "string" ? assets.get(market) : undefined;
    if (asset === undefined || found.has(asset.market) || !valid(asset, bid, ask)) return;
    found.set(asset.market, { bid: String(bid), ask: String(ask), from, source: known(source) });
  };
  /**
   * Per market found in the log, while the scan has not yet passed the entry that began its last top: the exchange
   * time of the oldest entry with that top so far. A heartbeat repeats the top before it, so the entry that began a
   * top is a changed quote, stamped with its book frame's time, not with a mark price's (heartbeat.ts).
   */
  const sinceUs = new Map<string, string>();

  const scanEntries = options.scanEntries ?? 10_000;
  const pageSize = options.pageSize ?? 1_000;
  let end = "+";
  for (let scanned = 0; (found.size < assets.size || sinceUs.size > 0) && scanned < scanEntries;) {
    const count = Math.min(pageSize, scanEntries - scanned);
    const page = await redis.xrevrange(keys.input, end, "-", "COUNT", count);
    for (const [id, fields] of page) {
      const decoded = decodeInputFields(fields);
      if (!decoded.ok || decoded.message.type !== "price_update") continue;
      const { market, bid, ask, exchangeTimeUs, source } = decoded.message;
      const asset = assets.get(market);
      // Stamped too far past the log's time (a skewed exchange clock): the engine ignored it, so must the sim.
      if (asset === undefined || !valid(asset, bid, ask) || aheadOfEngine(exchangeTimeUs, parseInputId(id).ms))
        continue;
      const last = found.get(market);
      if (last === undefined) {
        take(market, bid, ask, "log", source);
        sinceUs.set(market, exchangeTimeUs);
      } else if (sinceUs.has(market)) {
        if (last.bid === bid && last.ask === ask && last.source === known(source)) sinceUs.set(market, exchangeTimeUs);
        else {
          found.set(market, { ...last, changedAtUs: sinceUs.get(market) });
          sinceUs.delete(market);
        }
      }
    }
    const last = page.at(-1);
    if (page.length < count || last === undefined) break;
    scanned += page.length;
    end = `(${last[0]}`;
  }
  // The scan ended inside these markets' last tops: each stood at least from its oldest entry read.
  for (const [market, atUs] of sinceUs) {
    const last = found.get(market);
    if (last !== undefined) found.set(market, { ...last, changedAtUs: atUs });
  }

  const missing = markets.filter((asset) => !found.has(asset.market));
  if (missing.length === 0) return found;
  const views = await redis.hmget(keys.quotesKey, ...missing.map((asset) => asset.symbol));
  missing.forEach((asset, i) => {
    const view = parseObject(views[i]);
    // The field is the asset's symbol; a view naming another market is not this market's quote.
    if (view?.market === asset.market) take(view.market, view.bid, view.ask, "read_model", view.source);
  });
  return found;
}

/** True when the engine would take `bid` and `ask` as a quote of `asset` (engine/core/quotes.ts). */
function valid(asset: AssetConfig, bid: unknown, ask: unknown): boolean {
  return typeof bid === "string" && typeof ask === "string" && typeof quoteTicks(asset, bid, ask) !== "string";
}

function known(source: unknown): PriceSource | undefined {
  return source === "sim" || source === "backpack" ? source : undefined;
}

function parseObject(text: string | null | undefined): Record<string, unknown> | undefined {
  if (text === null || text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
