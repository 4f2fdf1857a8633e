/**
 * Candle frames to sockets, thinned for a slow client as quotes are (quotes.ts): a candle frame is the current state
 * of its series, so while a socket's send buffer is over the thinning mark only the latest frame of each series is
 * kept for it, and sent once the buffer has drained (the scheduler tick), instead of queueing every change until the
 * send buffer's cap closes the socket (4008). One exception keeps every bucket's final state: a frame held back for
 * a bucket that has ended goes out, buffer or not, just before the first frame of the series' next bucket.
 */
import type { SharedFrame, StreamConnection } from "./connection.ts";

interface Held {
  /** The bucket the frame is of: a later one's frame does not replace it, but follows it. */
  readonly openTimeMs: number;
  readonly frame: SharedFrame;
}

export class CandleDelivery {
  /** Per socket held back, by series key: the latest frame it is owed. */
  private readonly held = new Map<StreamConnection, Map<string, Held>>();

  /** `thinBytes`: frames are held back while a socket has at least this many bytes waiting (quotes.ts thinBytesOf). */
  constructor(private readonly thinBytes: number) {}

  /** The frame of series `key`'s bucket at `openTimeMs` to `conn`: now, or held back (latest wins) while it is slow. */
  send(conn: StreamConnection, key: string, openTimeMs: number, frame: SharedFrame, nowMs: number): void {
    const mine = this.held.get(conn);
    const owed = mine?.get(key);
    if (owed !== undefined) {
      mine!.delete(key);
      if (mine!.size === 0) this.held.delete(conn);
      // Its bucket ended: no later frame will carry its final state, so it goes now, before the next bucket's.
      if (owed.openTimeMs < openTimeMs) conn.sendShared(owed.frame, "candle", nowMs);
    }
    if (conn.bufferedAmount < this.thinBytes) conn.sendShared(frame, "candle", nowMs);
    else this.hold(conn, key, { openTimeMs, frame });
  }

  /** The scheduler tick: each socket held back whose buffer has drained gets the latest frame of each series. */
  tick(nowMs: number): void {
    for (const [conn, owed] of this.held) {
      if (conn.closed) this.held.delete(conn);
      else if (conn.bufferedAmount < this.thinBytes) {
        this.held.delete(conn);
        for (const { frame } of owed.values()) conn.sendShared(frame, "candle", nowMs);
      }
    }
  }

  /** Forgets what `conn` is owed of series `key`, or of every series. */
  forget(conn: StreamConnection, key?: string): void {
    if (key === undefined) {
      this.held.delete(conn);
      return;
    }
    const mine = this.held.get(conn);
    mine?.delete(key);
    if (mine?.size === 0) this.held.delete(conn);
  }

  /** Frames held back right now (tests). */
  heldCount(): number {
    let n = 0;
    for (const owed of this.held.values()) n += owed.size;
    return n;
  }

  private hold(conn: StreamConnection, key: string, held: Held): void {
    let mine = this.held.get(conn);
    if (mine === undefined) this.held.set(conn, (mine = new Map<string, Held>()));
    mine.set(key, held);
  }
}
