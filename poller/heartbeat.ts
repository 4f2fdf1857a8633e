/**
 * Quiet markets. Backpack's bookTicker sends a frame only when the book top changes, so a calm market can stay
 * silent longer than the engine's staleness limit (30 s of log time) while its quote is perfectly current, and
 * every order on it would be refused STALE_PRICE. While the feed's socket is live, the last quote of a market
 * that has not been published for `everyMs` is published again (same bid, ask and exchange time): it says "this
 * is still the top of the book". When the socket is down nothing is re-published, so staleness still means a
 * feed problem.
 */
import type { PriceUpdate } from "../contract/messages.ts";

export interface HeartbeatOptions {
  readonly everyMs: number;
  readonly live: () => boolean;
  readonly publish: (update: PriceUpdate) => void;
}

export class QuoteHeartbeat {
  private readonly last = new Map<string, { update: PriceUpdate; atMs: number }>();
  republished = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  /** Records a quote that was just published. */
  seen(update: PriceUpdate, nowMs: number): void {
    this.last.set(update.market, { update, atMs: nowMs });
  }

  /** Re-publishes every market quiet for `everyMs`, if the feed is live. Call it on a timer. */
  tick(nowMs: number): void {
    if (!this.options.live()) return;
    for (const entry of this.last.values()) {
      if (nowMs - entry.atMs < this.options.everyMs) continue;
      this.options.publish(entry.update);
      entry.atMs = nowMs;
      this.republished++;
    }
  }
}
