/**
 * Quotes to their subscribers, coalesced: each asset's frame is serialised and framed once and the same bytes go to
 * every socket; a socket gets at most one quote per asset per quoteIntervalMs, and one that arrives sooner, or while
 * the socket's send buffer is over quoteThinBytes or half its cap (a slow client), is held back and replaced by any
 * newer one: the client gets the latest price once it may, never a queue of stale ones. Held-back quotes go out on
 * one scheduler tick for the whole process, not a timer per socket.
 */
import type { OutputOf } from "../contract/messages.ts";
import { SharedFrame, type StreamConnection, type StreamLimits } from "./connection.ts";

export type QuoteOutput = OutputOf<"quote_updated">;

export class QuoteFanout {
  private readonly latest = new Map<string, SharedFrame>();
  private readonly all = new Set<StreamConnection>();
  private readonly byAsset = new Map<string, Set<StreamConnection>>();
  /** Asset → sockets owed its latest quote. */
  private readonly held = new Map<string, Set<StreamConnection>>();

  /** Quotes are held back above this many bytes waiting (thinBytesOf). */
  private readonly thinBytes: number;

  constructor(
    private readonly limits: Pick<StreamLimits, "quoteIntervalMs" | "quoteThinBytes" | "privateBufferCapBytes">,
  ) {
    this.thinBytes = thinBytesOf(limits);
  }

  /** Adds assets (undefined: all); sends the latest quote of each newly covered asset at once. */
  subscribe(conn: StreamConnection, assets: readonly string[] | undefined, nowMs: number): void {
    if (assets === undefined) {
      const had = conn.quotes;
      if (had === "all") return;
      // Assets it was owed a held-back quote of stay owed: removeFromAssets forgets them with the rest.
      const owed = new Set<string>();
      for (const [asset, conns] of this.held) if (conns.has(conn)) owed.add(asset);
      this.removeFromAssets(conn);
      conn.quotes = "all";
      this.all.add(conn);
      for (const asset of this.latest.keys())
        if (had === undefined || !had.has(asset) || owed.has(asset)) this.offer(conn, asset, nowMs);
      return;
    }
    if (conn.quotes === "all") return;
    const mine = conn.quotes ?? new Set<string>();
    conn.quotes = mine;
    for (const asset of assets) {
      if (mine.has(asset)) continue;
      mine.add(asset);
      let set = this.byAsset.get(asset);
      if (set === undefined) this.byAsset.set(asset, (set = new Set()));
      set.add(conn);
      this.offer(conn, asset, nowMs);
    }
  }

  /** Drops assets (undefined: every quote subscription). */
  unsubscribe(conn: StreamConnection, assets: readonly string[] | undefined, everyAsset: readonly string[]): void {
    if (assets === undefined) {
      this.remove(conn);
      return;
    }
    if (conn.quotes === "all") {
      // All but some: the rest as a list of their own.
      this.all.delete(conn);
      conn.quotes = new Set(everyAsset);
      for (const asset of everyAsset) {
        let set = this.byAsset.get(asset);
        if (set === undefined) this.byAsset.set(asset, (set = new Set()));
        set.add(conn);
      }
    }
    for (const asset of assets) {
      conn.quotes?.delete(asset);
      this.byAsset.get(asset)?.delete(conn);
      this.held.get(asset)?.delete(conn);
    }
    if (conn.quotes?.size === 0) conn.quotes = undefined;
  }

  remove(conn: StreamConnection): void {
    this.all.delete(conn);
    this.removeFromAssets(conn);
    conn.quotes = undefined;
  }

  /** The latest quote of its asset, sent to nobody now: what a subscribe sends until the next quote comes. */
  seed(quote: QuoteOutput): void {
    this.latest.set(quote.asset, quoteFrame(quote));
  }

  publish(quote: QuoteOutput, nowMs: number): void {
    const { asset } = quote;
    const frame = quoteFrame(quote);
    this.latest.set(asset, frame);
    const held = this.held.get(asset);
    for (const conn of this.all) this.deliver(conn, asset, frame, held, nowMs);
    const subscribers = this.byAsset.get(asset);
    if (subscribers !== undefined) for (const conn of subscribers) this.deliver(conn, asset, frame, held, nowMs);
  }

  /** The scheduler tick: each held-back socket that may take a quote now gets the latest one. */
  tick(nowMs: number): void {
    for (const [asset, conns] of this.held) {
      const frame = this.latest.get(asset)!;
      for (const conn of conns) {
        if (conn.closed) conns.delete(conn);
        else if (this.mayTake(conn, asset, nowMs)) {
          conns.delete(conn);
          this.sendTo(conn, asset, frame, nowMs);
        }
      }
      if (conns.size === 0) this.held.delete(asset);
    }
  }

  /**
   * Sends `conn` every quote held back for it now, whatever its rate or buffer: called before a private event, so
   * the client never sees an event caused by a price before that price.
   */
  flush(conn: StreamConnection, nowMs: number): void {
    for (const [asset, conns] of this.held) {
      if (!conns.delete(conn)) continue;
      this.sendTo(conn, asset, this.latest.get(asset)!, nowMs);
      if (conns.size === 0) this.held.delete(asset);
    }
  }

  /** Sockets held back right now (tests, metrics). */
  heldCount(): number {
    let n = 0;
    for (const conns of this.held.values()) n += conns.size;
    return n;
  }

  private offer(conn: StreamConnection, asset: string, nowMs: number): void {
    const frame = this.latest.get(asset);
    if (frame !== undefined) this.deliver(conn, asset, frame, this.held.get(asset), nowMs);
  }

  private deliver(
    conn: StreamConnection,
    asset: string,
    frame: SharedFrame,
    held: Set<StreamConnection> | undefined,
    nowMs: number,
  ): void {
    if (held?.has(conn)) return; // owed already: the tick sends whatever is latest then
    if (this.mayTake(conn, asset, nowMs)) this.sendTo(conn, asset, frame, nowMs);
    else {
      let set = held ?? this.held.get(asset);
      if (set === undefined) this.held.set(asset, (set = new Set()));
      set.add(conn);
    }
  }

  private mayTake(conn: StreamConnection, asset: string, nowMs: number): boolean {
    const last = conn.quoteSentMs.get(asset);
    return (last === undefined || nowMs - last >= this.limits.quoteIntervalMs) && conn.bufferedAmount < this.thinBytes;
  }

  private sendTo(conn: StreamConnection, asset: string, frame: SharedFrame, nowMs: number): void {
    conn.quoteSentMs.set(asset, nowMs);
    conn.sendShared(frame, "quote", nowMs);
  }

  private removeFromAssets(conn: StreamConnection): void {
    if (conn.quotes instanceof Set) for (const asset of conn.quotes) this.byAsset.get(asset)?.delete(conn);
    for (const conns of this.held.values()) conns.delete(conn);
  }
}

/**
 * Bytes waiting in a socket above which quotes and candles are held back (latest kept): quoteThinBytes, or half the
 * send buffer's cap if that is lower, so that they are thinned before the cap closes the socket (connection.ts).
 */
export function thinBytesOf(limits: Pick<StreamLimits, "quoteThinBytes" | "privateBufferCapBytes">): number {
  return Math.min(limits.quoteThinBytes, limits.privateBufferCapBytes / 2);
}

function quoteFrame({ asset, market, bid, ask, updatedAt, source }: QuoteOutput): SharedFrame {
  return new SharedFrame(Buffer.from(JSON.stringify({ type: "quote", asset, market, bid, ask, updatedAt, source })));
}
