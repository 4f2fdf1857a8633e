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
 * - A heartbeat vouches for the book, so it needs the book's own word: a bookTicker frame of the market accepted
 *   in sequence (ordering.ts; changed or not) on this connection, stamped at most `bookSilenceMs` (15 s by
 *   default) before the evidence. The mark price comes from the index, not the book, and flows on when only the
 *   book stops (a lost bookTicker subscription, a book halted at the exchange, frames refused as out of
 *   sequence); its frames alone would keep a frozen quote tradable for good. Past the limit the evidence gets
 *   `book_silent` instead of a heartbeat, the market's exchange time stops advancing, and the engine refuses
 *   orders on it 5 s after its last heartbeat. On an exchange the sizes at the top of a live book usually change far
 *   more often than that, even while its prices stand still; a quieter one needs a longer limit (config.ts).
 * - After a reconnect a market's heartbeats wait until the new connection has shown its book, so a heartbeat
 *   never vouches for a top of book seen before the gap (a first frame that leaves the top unchanged may be the
 *   snapshot answering the SUBSCRIBE, not the book's word, and shows nothing: feed-client.ts). A book it has not
 *   shown counts as silent from the connection's first evidence of the market (a bookTicker subscription that never
 *   delivers, or a market whose book has not shown itself at all yet).
 * - A live start takes each market's last live top in the log as its last published one (`loggedBefore`), so a
 *   quiet market's heartbeats resume once the new connection's book shows itself, although its first frame repeats
 *   that top and is not published (ordering.ts).
 * - A book frame of the market refused although stamped later than its last accepted one (`bookRefused`: ids out
 *   of sequence, as the first frame after ids start over, or prices that cannot be taken or are missing) says the
 *   top has moved from the one held: the market's heartbeats stop (`book_refused`) until a book frame of it is
 *   accepted again, so the old top is not re-published as live meanwhile.
 */
import type { TopOfBook } from "./frames.ts";
import type { LoggedTop } from "./ordering.ts";

export const HEARTBEAT_GAP_US = 900_000n;
/** How long before a heartbeat its market's book must have shown itself, by default (ms of exchange time). */
export const BOOK_SILENCE_MS = 15_000;

export class Heartbeats {
  private readonly last = new Map<string, { quote: TopOfBook; atUs: bigint }>();
  /** Per market, the exchange time of its newest book frame accepted on this connection. */
  private readonly bookAtUs = new Map<string, bigint>();
  /** Per market, the exchange time of its first evidence on this connection. */
  private readonly seenAtUs = new Map<string, bigint>();
  /** Markets whose book refused a later frame since it last showed itself: their top may be gone. */
  private readonly refused = new Set<string>();

  private readonly bookSilenceUs: bigint;

  constructor(bookSilenceMs = BOOK_SILENCE_MS) {
    if (!Number.isSafeInteger(bookSilenceMs) || bookSilenceMs < 0)
      throw new RangeError(`bookSilenceMs must be a whole number of milliseconds ≥ 0, got ${bookSilenceMs}`);
    this.bookSilenceUs = BigInt(bookSilenceMs) * 1000n;
  }

  /** A changed top of book was published. */
  published(quote: TopOfBook): void {
    const atUs = BigInt(quote.exchangeTimeUs);
    const before = this.last.get(quote.market)?.atUs;
    const { market, bid, ask, exchangeTimeUs } = quote; // a FeedQuote's update id is no part of a heartbeat
    this.last.set(market, {
      quote: { market, bid, ask, exchangeTimeUs },
      atUs: before !== undefined && before > atUs ? before : atUs,
    });
    this.bookShown(market, atUs);
  }

  /**
   * Evidence that `market` is live at `exchangeTimeUs`: a markPrice frame, or a bookTicker frame accepted in
   * sequence whose top is unchanged (`showsBook`). Returns the update to publish when a heartbeat is due,
   * `book_silent` when one would be due but the market's book has shown nothing for longer than the limit, or
   * `book_refused` when one would be due but the book refused a later frame since it last showed itself.
   */
  evidence(
    market: string,
    exchangeTimeUs: string,
    showsBook: boolean,
  ): TopOfBook | "book_silent" | "book_refused" | undefined {
    const atUs = BigInt(exchangeTimeUs);
    if (showsBook) this.bookShown(market, atUs);
    if (!this.seenAtUs.has(market)) this.seenAtUs.set(market, atUs);
    const last = this.last.get(market);
    if (last !== undefined && atUs - last.atUs < HEARTBEAT_GAP_US) return undefined;
    const bookAtUs = this.bookAtUs.get(market);
    // A book this connection has not shown yet has been silent since the connection's first word of its market.
    if (atUs - (bookAtUs ?? this.seenAtUs.get(market) ?? atUs) > this.bookSilenceUs) return "book_silent";
    if (last === undefined || bookAtUs === undefined) return undefined;
    if (this.refused.has(market)) return "book_refused";
    last.atUs = atUs;
    return { ...last.quote, exchangeTimeUs };
  }

  /**
   * A book frame of `market` stamped later than its last accepted one was refused: no heartbeat until a book frame of
   * it is accepted (`published`, or evidence that `showsBook`).
   */
  bookRefused(market: string): void {
    this.refused.add(market);
  }

  /**
   * The market's last top in the log, before this process started: what its heartbeats re-publish once a book frame
   * shows the book, unless a changed top is published first. Its start counts as its time, for the heartbeats' rate.
   */
  loggedBefore(market: string, top: LoggedTop): void {
    if (this.last.has(market)) return;
    const { bid, ask, sinceUs } = top;
    this.last.set(market, { quote: { market, bid, ask, exchangeTimeUs: sinceUs }, atUs: BigInt(sinceUs) });
  }

  /** A new connection: no market's book is shown on it yet. */
  newConnection(): void {
    this.bookAtUs.clear();
    this.seenAtUs.clear();
  }

  private bookShown(market: string, atUs: bigint): void {
    this.refused.delete(market);
    const before = this.bookAtUs.get(market);
    if (before === undefined || atUs > before) this.bookAtUs.set(market, atUs);
  }
}
