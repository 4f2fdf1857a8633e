/**
 * Heartbeats from the exchange itself. The engine judges a market fresh by the exchange's time of its newest
 * evidence of life (engine/core/freshness.ts), and Backpack's bookTicker sends a frame only when the top of the
 * book changes, so a quiet-but-live market needs other evidence: its `markPrice` stream, which Backpack pushes
 * about once a second per market (frames.ts), and bookTicker frames that changed only the sizes. Each is the
 * exchange saying "this market is live at time E"; for a market whose top of book is unchanged, that re-publishes
 * the last bid/ask stamped with E.
 *
 * - Rate: at most one heartbeat per market per `HEARTBEAT_GAP_US` (0.9 s) of exchange time, counted from the
 *   market's last published update of either kind, so the log gets about one entry a second per quiet market and
 *   none extra for a moving one. (0.9 s, not 1 s: markPrice frames come about 1 s apart, and jitter would
 *   otherwise skip every other one.)
 * - Nothing is re-published on a timer: when the exchange stops sending for a market, its exchange time stops
 *   advancing and the engine refuses orders on it `staleQuoteMs` (5 s) later, whatever else flows.
 * - After a reconnect a market's heartbeats wait until the new connection has shown its book (a bookTicker frame,
 *   changed or not), so a heartbeat never vouches for a top of book seen before the gap.
 */
import type { TopOfBook } from "./frames.ts";

export const HEARTBEAT_GAP_US = 900_000n;

export class Heartbeats {
  private readonly last = new Map<string, { quote: TopOfBook; atUs: bigint }>();
  /** Markets whose book this connection has shown. */
  private readonly shown = new Set<string>();

  /** A changed top of book was published. */
  published(quote: TopOfBook): void {
    const atUs = BigInt(quote.exchangeTimeUs);
    const before = this.last.get(quote.market)?.atUs;
    const { market, bid, ask, exchangeTimeUs } = quote; // a FeedQuote's update id is no part of a heartbeat
    this.last.set(market, {
      quote: { market, bid, ask, exchangeTimeUs },
      atUs: before !== undefined && before > atUs ? before : atUs,
    });
    this.shown.add(quote.market);
  }

  /**
   * Evidence that `market` is live at `exchangeTimeUs`: a markPrice frame, or a bookTicker frame whose top is
   * unchanged (`showsBook`). Returns the update to publish when a heartbeat is due.
   */
  evidence(market: string, exchangeTimeUs: string, showsBook: boolean): TopOfBook | undefined {
    if (showsBook) this.shown.add(market);
    const last = this.last.get(market);
    if (last === undefined || !this.shown.has(market)) return undefined;
    const atUs = BigInt(exchangeTimeUs);
    if (atUs - last.atUs < HEARTBEAT_GAP_US) return undefined;
    last.atUs = atUs;
    return { ...last.quote, exchangeTimeUs };
  }

  /** A new connection: no market's book is shown on it yet. */
  newConnection(): void {
    this.shown.clear();
  }
}
