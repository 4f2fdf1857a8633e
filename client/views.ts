/**
 * What the stream's frames carry (the API's shapes, docs/api.md), written out here so that the client depends on
 * nothing outside this folder: a frontend elsewhere uses its build (`npm run build:client`) without this
 * repository's packages. The server's own types are its schemas (contract/messages.ts, zod); `views-match.test.ts`
 * fails to compile when the two part ways.
 */

/** The listed assets, each traded against USD; what "all quotes" stands for. */
export const ASSET_SYMBOLS = ["ETH", "BTC", "SOL", "ADA"] as const;
export type AssetSymbol = (typeof ASSET_SYMBOLS)[number];

/** Candle intervals, finest first. */
export const CANDLE_INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"] as const;
export type CandleInterval = (typeof CANDLE_INTERVALS)[number];

/** Free amount per currency (`USD` and each asset), as decimal strings. */
export type Balances = Record<string, string>;

/**
 * A trailing stop as of the trade's last output: its terms, whether it trails yet, its best price and level. The
 * engine's best price and level move with the quotes between outputs without one (docs/stream.md).
 */
export interface TrailingStopView {
  readonly distance: string | null;
  readonly percent: string | null;
  readonly activationPrice: string | null;
  readonly activated: boolean;
  /** Best price since activation (long: highest bid, short: lowest ask); null until activated. */
  readonly bestPrice: string | null;
  /** The price it fires at, from bestPrice; null until activated. As of the last output, like bestPrice. */
  readonly level: string | null;
}

export interface TradeView {
  readonly id: string;
  readonly asset: string;
  readonly type: "long" | "short";
  readonly margin: string;
  readonly leverage: number;
  readonly quantity: string;
  readonly openPrice: string;
  readonly stopLoss: string | null;
  readonly takeProfit: string | null;
  readonly trailingStop: TrailingStopView | null;
  readonly liquidationPrice: string | null;
  readonly openedAt: string;
}

/** One close of a trade, of all of it or of part: `quantity` and `margin` are the part closed. */
export interface ClosedTradeView extends TradeView {
  /** The trade id for the close of what remained; `<trade id>.<n>` for a partial close. */
  readonly closeId: string;
  readonly closePrice: string;
  /** Exactly what the USD balance changed by beyond the returned margin; never below −margin. */
  readonly pnl: string;
  /** The loss at closePrice beyond the margin that negative balance protection waived; else null. */
  readonly lossWaived: string | null;
  /** What stays open after this close; "0" when the trade is closed. */
  readonly remainingQuantity: string;
  readonly closeReason: "manual" | "stop_loss" | "take_profit" | "trailing_stop" | "liquidation";
  readonly closedAt: string;
}

/** A trailing stop's terms on an entry order. */
export interface TrailingStopSpec {
  readonly distance?: string | undefined;
  readonly percent?: string | undefined;
  readonly activationPrice?: string | undefined;
}

/** A pending entry order and its life: placed (pending), then filled, cancelled, expired or rejected at fill. */
export interface OrderView {
  readonly id: string;
  readonly asset: string;
  readonly side: "long" | "short";
  readonly type: "limit" | "stop";
  readonly price: string;
  readonly margin: string;
  readonly leverage: number;
  readonly stopLoss: string | null;
  readonly takeProfit: string | null;
  readonly trailingStop: TrailingStopSpec | null;
  readonly expiresAt: string | null;
  /** The other leg of its one-cancels-other pair; null when not linked. */
  readonly ocoWith: string | null;
  readonly status: "pending" | "filled" | "cancelled" | "expired" | "rejected";
  readonly placedAt: string;
  readonly updatedAt: string;
  readonly fillPrice: string | null;
  readonly tradeId: string | null;
  /** Why it left the book without filling: cancelled by the user or its OCO leg, expired, or refused at fill. */
  readonly reason: { readonly code: string; readonly message: string } | null;
}

/** `GET /api/v1/account/summary`'s fields. */
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

/** One candle of bid prices. */
export interface Candle {
  readonly asset: string;
  readonly interval: CandleInterval;
  /** ISO 8601 UTC start of the bucket. */
  readonly openTime: string;
  readonly open: string;
  readonly high: string;
  readonly low: string;
  readonly close: string;
}
