/**
 * The account summary (docs/api.md, `GET /api/v1/account/summary`), built from the worker's read models only: the
 * free USD of the balances hash, the open trades, the pending orders' reserved margin and the latest quotes.
 *
 * Every figure is exact, summed in bigint USD micros (an account's totals are not bounded by one balance's range):
 * - margin used   = Σ open trades' margin + Σ pending orders' reserved margin, where an OCO pair (two pending
 *                   orders whose `ocoWith` name each other) reserves the larger of its two margins, once, as the
 *                   engine does (at most one leg can fill); a leg whose partner has left reserves its own
 * - balance       = free USD + margin used (USD only: spot holdings are not valued here; the summary is the margin
 *                   account's, and the holdings are in GET /api/v1/account/balance)
 * - unrealized    = Σ per open trade: long (bid − open) × quantity, short (open − ask) × quantity, each never below
 *                   −margin (settlement caps a loss there); a trade whose market has no quote counts 0, and its
 *                   asset is listed in `pricesMissing`
 * - equity        = balance + unrealized
 * - free margin   = equity − margin used
 * - margin level  = equity / margin used × 100, a percentage rounded DOWN to 2 decimals (it never shows an account
 *                   safer than it is); null when margin used is 0
 */
import { ASSET_BY_SYMBOL, ASSETS } from "../contract/markets.ts";
import type { TradeView } from "../contract/messages.ts";
import { formatBigUnits, toUnits, USD_DECIMALS } from "../contract/money.ts";
import { unrealizedPnlMicros, type Quote } from "./views.ts";

export interface AccountSummary {
  readonly balance: string;
  readonly equity: string;
  readonly marginUsed: string;
  readonly freeMargin: string;
  readonly marginLevel: string | null;
  readonly unrealizedPnl: string;
  /** Assets of open trades without a quote yet, in the order of the asset list; their PnL counts as 0. */
  readonly pricesMissing: string[];
}

/** What the worker keeps for one user: balances, open trades (id → Trade JSON), pending orders (id → JSON). */
export interface StoredAccount {
  readonly balances: Record<string, string>;
  readonly openTrades: Record<string, string>;
  readonly pendingOrders: Record<string, string>;
}

/** Margin level's scale: a percentage with 2 decimals is equity × 100 × 10^2 / margin used. */
const LEVEL_DECIMALS = 2;
const LEVEL_FACTOR = 100n * 10n ** BigInt(LEVEL_DECIMALS);

export function accountSummary(stored: StoredAccount, quotes: ReadonlyMap<string, Quote>): AccountSummary {
  const freeUsd = micros(stored.balances.USD ?? "0", "free USD");
  let marginUsed = 0n;
  let unrealized = 0n;
  const missing = new Set<string>();
  for (const json of Object.values(stored.openTrades)) {
    const trade = JSON.parse(json) as TradeView;
    marginUsed += micros(trade.margin, `trade ${trade.id} margin`);
    const asset = ASSET_BY_SYMBOL.get(trade.asset);
    const quote = quotes.get(trade.asset);
    if (asset === undefined || quote === undefined) {
      missing.add(trade.asset);
      continue;
    }
    unrealized += unrealizedPnlMicros(asset, trade, trade.type === "long" ? quote.bid : quote.ask);
  }
  marginUsed += reservedMicros(stored.pendingOrders);
  const balance = freeUsd + marginUsed;
  const equity = balance + unrealized;
  return {
    balance: usd(balance),
    equity: usd(equity),
    marginUsed: usd(marginUsed),
    freeMargin: usd(equity - marginUsed),
    marginLevel: marginUsed === 0n ? null : formatBigUnits(floorDiv(equity * LEVEL_FACTOR, marginUsed), LEVEL_DECIMALS),
    unrealizedPnl: usd(unrealized),
    pricesMissing: [
      ...ASSETS.filter((a) => missing.has(a.symbol)).map((a) => a.symbol),
      ...[...missing].filter((s) => !ASSET_BY_SYMBOL.has(s)),
    ],
  };
}

/** What the pending orders reserve: each its own margin, but an OCO pair only its larger margin, counted once. */
function reservedMicros(pendingOrders: Record<string, string>): bigint {
  const orders = new Map<string, { margin: bigint; ocoWith: string | null }>();
  for (const [id, json] of Object.entries(pendingOrders)) {
    const order = JSON.parse(json) as { margin?: unknown; ocoWith?: unknown };
    const margin = micros(order.margin, `pending order ${id} margin`);
    const ocoWith = order.ocoWith;
    if (ocoWith !== null && typeof ocoWith !== "string") {
      throw new Error(`read model: pending order ${id} ocoWith is not an order id: ${JSON.stringify(ocoWith)}`);
    }
    orders.set(id, { margin, ocoWith });
  }
  let reserved = 0n;
  for (const [id, { margin, ocoWith }] of orders) {
    const other = ocoWith === null ? undefined : orders.get(ocoWith);
    if (ocoWith === null || other?.ocoWith !== id) reserved += margin;
    // The pair is counted at the leg whose id sorts first, so once.
    else if (id < ocoWith) reserved += margin > other.margin ? margin : other.margin;
  }
  return reserved;
}

/** A read model's USD amount in micros; one that does not parse is a bug in what wrote it. */
function micros(text: unknown, what: string): bigint {
  const units = typeof text === "string" ? toUnits(text, USD_DECIMALS, Number.MAX_SAFE_INTEGER) : -1;
  if (units < 0) throw new Error(`read model: ${what} is not a USD amount: ${JSON.stringify(text)}`);
  return BigInt(units);
}

function usd(micros: bigint): string {
  return formatBigUnits(micros, USD_DECIMALS);
}

/** ⌊a / b⌋ for b > 0 (bigint division truncates toward zero). Equity is never negative, but the rule is total. */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a < 0n && q * b !== a ? q - 1n : q;
}
