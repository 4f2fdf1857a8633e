/**
 * The clock every duration in the stream is measured on (message rate, quote spacing, heartbeats, pings, liveness,
 * summary throttle, the revocation check's period, what a candle load sends): monotonic, so a wall clock stepped back
 * does not close every socket over its message rate nor hold its quotes and heartbeats back, and one stepped forward
 * does not drop every socket as silent. Date.now() only where real time is meant: session expiry, a heartbeat's
 * `time`, candle buckets, lag. One helper, so that every module reads the same clock.
 */
export const monotonicMs = (): number => performance.now();
