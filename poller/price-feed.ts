/**
 * Chooses and runs the price source: `backpack` (live), `sim` (an external sim feed at `simWsUrl`, or one started
 * in-process), or `auto`: live if Backpack delivers a quote within `fallbackAfterMs`, else sim with a loud warning;
 * at once when Backpack's host name does not resolve (no network, no DNS: no quote is coming). When most frames
 * were refused as stamped in the future, the warning says this machine's clock is behind: that, not Backpack, is
 * what to fix.
 *
 * Auto waits for a quote, not just an open socket: a connection that opens but never streams prices (a proxy, a
 * refused subscription) is no live feed. Once on sim, the process stays on sim until restarted: switching sources
 * back and forth would interleave two unrelated price series in the log.
 *
 * An in-process sim, whether chosen or a fallback, starts each market from the last quote the system holds
 * (`lastQuotes`, read when the sim starts), so a restart does not put a price gap in the log. An external sim
 * (`simWsUrl`) keeps its own prices.
 *
 * The other way cannot be smoothed: live prices are the market's. So a live start (`backpack`, `auto`) reads the
 * last quotes first, before its connection can write any, and a market whose last quote came from the sim gets a
 * loud warning at its first live quote (`feed_live_after_sim`, with both prices): the log jumps there, and stops,
 * take-profits, pending orders and liquidations between the two prices fire on the jump. Live prices still win.
 * The same read gives, per market whose last quote in the log is live, that top and when it began (`changedAtUs`): the
 * live feed drops a first frame stamped earlier (a lagging gateway node, a cached snapshot), which would take the
 * market back in time, and takes one that repeats the top as `unchanged`, so a halted book's frozen top, answered to
 * the SUBSCRIBE and stamped now, is not published as fresh; as on a reconnect (ordering.ts, feed-client.ts). A
 * simulated quote's time is another clock's and tells nothing of it, and its top is not the live book's.
 */
import type { AssetConfig } from "../contract/markets.ts";
import type { PriceUpdate } from "../contract/messages.ts";
import { settledWithin } from "../platform/config.ts";
import type { Logger } from "../platform/log.ts";
import type { FeedMode } from "./config.ts";
import { FeedClient, type FeedClientOptions, type FeedCounters, type FeedState } from "./feed-client.ts";
import type { FeedQuote } from "./frames.ts";
import type { LoggedTop } from "./ordering.ts";
import { toPriceUpdate, type PriceSource } from "./publisher.ts";
import { startSimFeed, type SimFeed } from "./sim-feed.ts";
import type { LastQuote } from "./start-quotes.ts";

export interface PriceFeedOptions {
  readonly mode: FeedMode;
  readonly backpackWsUrl: string;
  readonly simWsUrl: string | undefined;
  readonly markets: readonly AssetConfig[];
  /** Every update to publish: a changed top of book (`quote`), or the exchange's heartbeat for an unchanged one. */
  readonly onUpdate: (update: PriceUpdate, kind: "quote" | "heartbeat") => void;
  readonly log: Logger;
  readonly fallbackAfterMs?: number;
  /** How long a market's book may show nothing before its heartbeats stop (config.ts); absent: FeedClient's default. */
  readonly bookSilenceMs?: number | undefined;
  /** Timing knobs passed to every FeedClient (tests shorten them). */
  readonly client?: Pick<FeedClientOptions, "silenceMs" | "backoffBaseMs" | "backoffCapMs">;
  /** Called each time the current source's connection schedules a reconnect. */
  readonly onReconnect?: () => void;
  /**
   * The last quotes the system holds, per market (main.ts: readLastQuotes): an in-process sim starts from them
   * (absent: the sim's levels), and a live start warns of each market whose last one was simulated and judges its
   * first frames against its last live top (ordering.ts).
   */
  readonly lastQuotes?: () => Promise<ReadonlyMap<string, LastQuote>>;
  /** How long a live start waits for `lastQuotes` before it connects without them (default LAST_QUOTES_WAIT_MS). */
  readonly lastQuotesWaitMs?: number;
}

/**
 * A live start's wait for the last quotes (only its warning and its first frames' floor need them): a healthy Redis
 * answers in milliseconds.
 */
export const LAST_QUOTES_WAIT_MS = 2_000;

export class PriceFeed {
  private client: FeedClient | undefined;
  private sim: SimFeed | undefined;
  private current: PriceSource | undefined;
  private stopped = false;
  /** Markets whose last quote before this live start was simulated, until their first live quote is warned of. */
  private readonly simBeforeLive = new Map<string, LastQuote>();
  /** Per market whose last quote in the log before this live start was live: that top, and since when it stood. */
  private readonly loggedLiveTops = new Map<string, LoggedTop>();

  constructor(private readonly options: PriceFeedOptions) {}

  /** The source chosen: after a fallback, "sim" already while the sim starts. */
  get source(): PriceSource | undefined {
    return this.current;
  }

  /** The current source's connection; "connecting" before the first one (or while the sim starts). */
  get state(): FeedState {
    if (this.stopped) return "stopped";
    return this.client?.state ?? "connecting";
  }

  get counters(): FeedCounters | undefined {
    return this.client?.counters;
  }

  /** The in-process simulator, when one was started (tests drive it). */
  get simulator(): SimFeed | undefined {
    return this.sim;
  }

  async start(): Promise<void> {
    const { mode, backpackWsUrl, log } = this.options;
    if (mode !== "sim") {
      // Read before connecting: once the live feed writes, a market's last quote would be its own.
      for (const [market, quote] of await this.lastQuotesForLiveStart()) {
        if (quote.source === "sim") this.simBeforeLive.set(market, quote);
        const { bid, ask, changedAtUs: sinceUs } = quote;
        if (quote.from === "log" && quote.source === "backpack" && sinceUs !== undefined)
          this.loggedLiveTops.set(market, { bid, ask, sinceUs });
      }
      if (this.stopped) return;
    }
    if (mode === "backpack") {
      this.connect(backpackWsUrl, "backpack");
      return;
    }
    if (mode === "auto") {
      const fallbackAfterMs = this.options.fallbackAfterMs ?? 5_000;
      const live = this.connect(backpackWsUrl, "backpack");
      const outcome = await live.firstQuote(fallbackAfterMs);
      if (outcome === "quote" || outcome === "stopped" || this.stopped) return;
      const clockBehindMs = outcome === "timeout" ? clockBehind(live) : undefined;
      const reason = clockBehindMs === undefined ? outcome : "clock_behind";
      const why =
        outcome === "unresolvable"
          ? `its host name does not resolve (${live.unresolved ?? "DNS failure"})`
          : clockBehindMs !== undefined
            ? `its frames were refused as stamped in the future (more than the engine's 5 s ahead of this ` +
              `machine's clock): this machine's clock is about ${Math.round(clockBehindMs / 1000)} s behind ` +
              `Backpack's; set it right (NTP)`
            : `it sent no quote within ${fallbackAfterMs} ms`;
      // The source is the sim from here, connecting until its client exists (the sim first reads the last quotes):
      // the stopped Backpack client would show the feed as stopped for good, and on the live source.
      this.client = undefined;
      this.current = "sim";
      await live.stop();
      log.warn("feed_fallback_to_sim", {
        reason,
        message: `PRICES ARE SIMULATED: Backpack (${backpackWsUrl}) cannot be used: ${why}. Every price_update now has source "sim". Restart the poller to try the live feed again.`,
      });
    } else {
      log.warn("feed_simulated", { message: 'FEED=sim: PRICES ARE SIMULATED (source "sim"), not market data.' });
    }
    await this.startSim();
  }

  /**
   * The last quotes, for the warning of a live start after simulated prices and its ordering gate only: read within
   * LAST_QUOTES_WAIT_MS, or skipped (`feed_last_quotes_unread`). A Redis that accepts the connection and answers
   * nothing would otherwise keep the live feed from ever opening, and its read connection waits for as long as TCP
   * takes to notice (hours).
   */
  private async lastQuotesForLiveStart(): Promise<ReadonlyMap<string, LastQuote>> {
    const read = this.options.lastQuotes?.();
    if (read === undefined) return new Map();
    const waitMs = this.options.lastQuotesWaitMs ?? LAST_QUOTES_WAIT_MS;
    let said = false; // once: a read that fails after the wait is not news
    const unread = (error: string) => {
      // A stop fails a read still waiting (main.ts drops the read connection): that is no news either.
      if (!said && !this.stopped) this.options.log.warn("feed_last_quotes_unread", { error, waitedMs: waitMs });
      said = true;
      return new Map<string, LastQuote>();
    };
    const quotes = await settledWithin(
      read.catch((error: unknown) => unread(String(error))),
      waitMs,
      new AbortController().signal,
    );
    return quotes ?? unread(`no answer within ${waitMs} ms`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.stop();
    await this.sim?.stop();
  }

  private async startSim(): Promise<void> {
    let url = this.options.simWsUrl;
    if (url === undefined) {
      const startQuotes = await this.options.lastQuotes?.().catch((error: unknown) => {
        // A stop drops the read connection, failing a read that was still waiting for Redis: nothing is to start.
        if (this.stopped) return undefined;
        throw error;
      });
      if (this.stopped) return;
      const sim = await startSimFeed({ markets: this.options.markets, startQuotes });
      this.sim = sim;
      if (this.stopped) return void (await sim.stop());
      url = sim.url;
      const continued: Record<string, LastQuote> = {};
      const atLevels: string[] = [];
      for (const { market } of this.options.markets) {
        const quote = startQuotes?.get(market);
        if (sim.startedFrom[market] === "quote" && quote !== undefined) continued[market] = quote;
        else atLevels.push(market);
      }
      this.options.log.info("sim_feed_started", { url, continued, atLevels });
    }
    if (!this.stopped) this.connect(url, "sim");
  }

  /** A market's first live quote after a log that ended on simulated prices: the jump is logged, loudly. */
  private warnIfAfterSim(quote: FeedQuote): void {
    const sim = this.simBeforeLive.get(quote.market);
    if (sim === undefined) return;
    this.simBeforeLive.delete(quote.market);
    const { market, bid, ask } = quote;
    this.options.log.warn("feed_live_after_sim", {
      market,
      sim: { bid: sim.bid, ask: sim.ask, from: sim.from },
      live: { bid, ask },
      message:
        `PRICE JUMP: ${market}'s last price was simulated (bid ${sim.bid}, ask ${sim.ask}, source "sim"); ` +
        `its first live price is bid ${bid}, ask ${ask}. Stops, take-profits, pending orders and liquidations ` +
        `between the two fire on this jump. To keep a simulated session apart from live trading, reset the data ` +
        `before going live.`,
    });
  }

  private connect(url: string, source: PriceSource): FeedClient {
    const { markets, log, onUpdate } = this.options;
    const client = new FeedClient({
      ...this.options.client,
      bookSilenceMs: this.options.bookSilenceMs,
      url,
      markets,
      log: log.child({ source }),
      onReconnect: this.options.onReconnect,
      loggedTops: source === "backpack" ? this.loggedLiveTops : undefined,
      onQuote: (quote) => {
        if (source === "backpack") this.warnIfAfterSim(quote);
        onUpdate(toPriceUpdate(quote, source), "quote");
      },
      onHeartbeat: (update) => onUpdate(toPriceUpdate(update, source), "heartbeat"),
    });
    this.client = client;
    this.current = source;
    client.start();
    return client;
  }
}

/**
 * How far behind Backpack's clock this machine's seems (ms), when most market-data frames the live client received
 * were dropped as stamped in the future (`future`); else undefined. Frames refused for other reasons, or none at
 * all, are another story, told as "sent no quote".
 */
function clockBehind(live: FeedClient): number | undefined {
  const { received, control, dropped } = live.counters;
  const aheadMs = live.futureAheadMs;
  if (aheadMs === undefined || dropped.future === 0 || dropped.future * 2 < received - control) return undefined;
  return aheadMs;
}
