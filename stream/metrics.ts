/**
 * The stream process's Prometheus metrics: connections, frames sent by type, closes by code and by who closed first,
 * fan-out lag, private channels waiting on a gap.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { CLOSE_CODES } from "../client/protocol.ts";

/**
 * The close codes `stream_closes_total` names by number: the server's own (docs/stream.md), 1000 (a client's normal
 * close), 1005 (a close frame without a code) and 1006 (dropped). Any other is `other`: a client may close with any
 * code from 1000 to 4999, and a label it picks would add a series that lasts as long as the process.
 */
const LABELLED_CLOSE_CODES = new Set<number>([1000, 1005, 1006, ...Object.values(CLOSE_CODES)]);

/** `code`'s label in `stream_closes_total`: itself, or `other` (LABELLED_CLOSE_CODES). */
export function closeCodeLabel(code: number): string {
  return LABELLED_CLOSE_CODES.has(code) ? String(code) : "other";
}

/**
 * Who closed a socket first: `server` when this server closed it (StreamConnection.close/terminate, or ws failing a
 * bad frame); `client` when the client's close frame came first or the socket dropped. A client may close with any of
 * the stream's own codes (4008 among them), and counted as the server's it would raise the operators' alarms.
 */
export type ClosedBy = "server" | "client";

export interface StreamMetrics {
  connected(delta: 1 | -1): void;
  frameSent(type: string): void;
  closed(code: number, by: ClosedBy): void;
  /** How long after it was XADDed a fan-out entry was read, in seconds. */
  fanoutLag(seconds: number): void;
  /** A private channel began (1) or stopped (-1) waiting for an event the store does not hold (a gap). */
  gapWaiting(delta: 1 | -1): void;
}

export function streamMetrics(registry: Registry): StreamMetrics {
  const registers = [registry];
  const connections = new Gauge({ name: "stream_connections", help: "Open client sockets.", registers });
  const frames = new Counter({
    name: "stream_frames_sent_total",
    help: "Frames sent to clients, by frame type.",
    labelNames: ["type"],
    registers,
  });
  const closes = new Counter({
    name: "stream_closes_total",
    help:
      "Sockets closed, by close code and by who closed first (by=server: the server, with its code; by=client: " +
      "the client, with its code, or the socket dropped). 1006: dropped; other: a code the stream does not use, " +
      "nor 1000 or 1005.",
    labelNames: ["code", "by"],
    registers,
  });
  const lag = new Histogram({
    name: "stream_fanout_lag_seconds",
    help: "Time from a fan-out entry's XADD to this replica reading it.",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const gaps = new Counter({
    name: "stream_private_gaps_total",
    help: "Gaps a private channel had to wait on: the next event was notified past, and not yet in the store.",
    registers,
  });
  const gapsWaiting = new Gauge({
    name: "stream_private_gap_waiting_channels",
    help: "Private channels waiting for an event the store does not hold; one that stays is an output never stored.",
    registers,
  });
  // Label children looked up once per type: a quote goes to many sockets.
  const frameCounters = new Map<string, Counter.Internal>();
  return {
    connected: (delta) => connections.inc(delta),
    frameSent(type) {
      let counter = frameCounters.get(type);
      if (counter === undefined) frameCounters.set(type, (counter = frames.labels(type)));
      counter.inc();
    },
    closed: (code, by) => closes.labels(closeCodeLabel(code), by).inc(),
    fanoutLag: (seconds) => lag.observe(Math.max(0, seconds)),
    gapWaiting(delta) {
      if (delta > 0) gaps.inc();
      gapsWaiting.inc(delta);
    },
  };
}

/** For tests and tools that do not serve metrics. */
export const NO_METRICS: StreamMetrics = {
  connected: () => undefined,
  frameSent: () => undefined,
  closed: () => undefined,
  fanoutLag: () => undefined,
  gapWaiting: () => undefined,
};
