/**
 * What a socket is subscribed to, modelled as the stream server holds it (stream/hub.ts, quotes.ts; docs/stream.md),
 * so that the client re-subscribes after a reconnect exactly what the server held:
 * - quotes: a set of assets, or all of them. A subscribe adds its assets (without `assets`: all); an unsubscribe
 *   removes its assets (from all: every other asset stays), and without `assets` removes every one.
 * - candles: a set of (asset, interval) series.
 * - private: on or off.
 * Subscribing to what is held, or unsubscribing what is not, changes nothing. Pure functions on plain data.
 */
import { ASSET_SYMBOLS, type AssetSymbol, type CandleInterval, type Subscription } from "./protocol.ts";

export interface SubscriptionSet {
  readonly quotes: "all" | ReadonlySet<AssetSymbol>;
  /** By `<asset> <interval>`. */
  readonly candles: ReadonlyMap<string, { readonly asset: AssetSymbol; readonly interval: CandleInterval }>;
  readonly private: boolean;
}

export type SubscriptionOp = "subscribe" | "unsubscribe";

export const NO_SUBSCRIPTIONS: SubscriptionSet = { quotes: new Set(), candles: new Map(), private: false };

/** The set after the server carried out `op` of `subscription`. */
export function applySubscription(
  set: SubscriptionSet,
  op: SubscriptionOp,
  subscription: Subscription,
): SubscriptionSet {
  switch (subscription.channel) {
    case "quotes":
      return { ...set, quotes: quotesAfter(set.quotes, op, subscription.assets) };
    case "candles": {
      const key = `${subscription.asset} ${subscription.interval}`;
      const candles = new Map(set.candles);
      if (op === "subscribe") candles.set(key, { asset: subscription.asset, interval: subscription.interval });
      else candles.delete(key);
      return { ...set, candles };
    }
    case "private":
      return { ...set, private: op === "subscribe" };
  }
}

function quotesAfter(
  quotes: SubscriptionSet["quotes"],
  op: SubscriptionOp,
  assets: readonly AssetSymbol[] | undefined,
): SubscriptionSet["quotes"] {
  if (op === "subscribe") {
    if (assets === undefined || quotes === "all") return "all";
    return new Set([...quotes, ...assets]);
  }
  if (assets === undefined) return new Set();
  const held = quotes === "all" ? ASSET_SYMBOLS : [...quotes];
  return new Set(held.filter((asset) => !assets.includes(asset)));
}

/** Everything in either set. */
export function unionOf(a: SubscriptionSet, b: SubscriptionSet): SubscriptionSet {
  const quotes = a.quotes === "all" || b.quotes === "all" ? "all" : new Set([...a.quotes, ...b.quotes]);
  return { quotes, candles: new Map([...a.candles, ...b.candles]), private: a.private || b.private };
}

/** What is in `a` and not in `b`: what subscribes on top of `b` must add. */
export function withoutHeld(a: SubscriptionSet, b: SubscriptionSet): SubscriptionSet {
  let quotes: SubscriptionSet["quotes"];
  if (b.quotes === "all") quotes = new Set();
  else if (a.quotes === "all") quotes = "all";
  else {
    const held = b.quotes;
    quotes = new Set([...a.quotes].filter((asset) => !held.has(asset)));
  }
  const candles = new Map([...a.candles].filter(([key]) => !b.candles.has(key)));
  return { quotes, candles, private: a.private && !b.private };
}

/**
 * What to send, in order, to subscribe `set`: the private channel first, then candles, then quotes, so that when a
 * lowered limit refuses one, it is the quotes. With `restore` (`set` is what a server held, onto a new socket), a
 * quote list that would not fit under `maxSubscriptions` goes as all quotes (one subscription) less the others: the
 * server held such a list after assets were unsubscribed from all quotes (an unsubscribe is never refused), and
 * counts it the same way again.
 */
export function replayOf(
  set: SubscriptionSet,
  maxSubscriptions: number,
  restore: boolean,
): [SubscriptionOp, Subscription][] {
  const out: [SubscriptionOp, Subscription][] = [];
  if (set.private) out.push(["subscribe", { channel: "private" }]);
  for (const { asset, interval } of set.candles.values())
    out.push(["subscribe", { channel: "candles", asset, interval }]);
  const quotes = set.quotes;
  if (quotes === "all") out.push(["subscribe", { channel: "quotes" }]);
  else if (quotes.size > 0) {
    const assets = ASSET_SYMBOLS.filter((asset) => quotes.has(asset));
    if (!restore || out.length + assets.length <= maxSubscriptions)
      out.push(["subscribe", { channel: "quotes", assets }]);
    else {
      const others = ASSET_SYMBOLS.filter((asset) => !quotes.has(asset));
      out.push(["subscribe", { channel: "quotes" }]);
      if (others.length > 0) out.push(["unsubscribe", { channel: "quotes", assets: others }]);
    }
  }
  return out;
}

/**
 * The subscribes that bring a socket holding nothing to `set`: one for the quotes (all, or the assets in a stable
 * order), one per candle series, then the private channel.
 */
export function subscriptionsOf(set: SubscriptionSet): Subscription[] {
  const out: Subscription[] = [];
  const quotes = set.quotes;
  if (quotes === "all") out.push({ channel: "quotes" });
  else if (quotes.size > 0) out.push({ channel: "quotes", assets: ASSET_SYMBOLS.filter((asset) => quotes.has(asset)) });
  for (const { asset, interval } of set.candles.values()) out.push({ channel: "candles", asset, interval });
  if (set.private) out.push({ channel: "private" });
  return out;
}
