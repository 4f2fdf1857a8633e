/**
 * The client's side of the server's message rate (docs/stream.md, close 4029): a token bucket, as the server keeps
 * one per socket, that says when the next frame may go. The server allows `maxMessagesPerSec` sustained and a burst
 * of 3 seconds' worth; this one allows the same rate and a burst of one second's worth. The two seconds' difference
 * is the margin for the network: frames sent spaced out may arrive bunched, and the server counts them as they
 * arrive. Pure: the caller passes the time.
 */
export class SendAllowance {
  private tokens: number;
  private atMs: number;
  /** The most frames sent back to back: one second's worth, at least one. */
  readonly burst: number;

  /** `perSec`: frames per second, sustained; Infinity for no limit. */
  constructor(
    readonly perSec: number,
    nowMs: number,
  ) {
    this.burst = Math.max(1, Math.floor(perSec));
    this.tokens = this.burst;
    this.atMs = nowMs;
  }

  /** How long until a frame may go: 0 when one may go now. */
  waitMs(nowMs: number): number {
    this.refill(nowMs);
    if (this.tokens >= 1) return 0;
    return Math.ceil(((1 - this.tokens) * 1000) / this.perSec);
  }

  /** Takes a frame's worth; call only when waitMs is 0. */
  take(nowMs: number): void {
    this.refill(nowMs);
    this.tokens -= 1;
  }

  private refill(nowMs: number): void {
    if (this.perSec === Number.POSITIVE_INFINITY) {
      this.tokens = this.burst;
      return;
    }
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, nowMs - this.atMs) * this.perSec) / 1000);
    this.atMs = nowMs;
  }
}
