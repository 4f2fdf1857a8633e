/**
 * The live stream's wire protocol (docs/stream.md) as types: every frame a client sends and every frame the stream
 * server sends, one JSON object per WebSocket text frame. Types only, so the stream server, the tests and a
 * browser bundle can all import it without pulling in anything that runs.
 */
import type {
  AccountSummary,
  AssetSymbol,
  Balances,
  Candle,
  CandleInterval,
  ClosedTradeView,
  OrderView,
  TradeView,
} from "./views.ts";

export * from "./views.ts";

/** What a client can subscribe to. The private channel's `since` is the client's business (stream-client.ts). */
export type Subscription =
  | { readonly channel: "quotes"; readonly assets?: readonly AssetSymbol[] }
  | { readonly channel: "candles"; readonly asset: AssetSymbol; readonly interval: CandleInterval }
  | { readonly channel: "private" };

// ---- client → server ---------------------------------------------------------------------------------------------

/**
 * Chosen by the client for a request; the server's answer to it echoes it. A string at most 64 characters, or a number
 * within ±(2^53−1): a larger one is refused, as JSON would have rounded it.
 */
export type RequestId = string | number;

/** `id`: echoed in the answer, `subscribed` or `error`. */
export type SubscribeFrame = { readonly id?: RequestId } & (
  | { readonly op: "subscribe"; readonly channel: "quotes"; readonly assets?: readonly AssetSymbol[] }
  | {
      readonly op: "subscribe";
      readonly channel: "candles";
      readonly asset: AssetSymbol;
      readonly interval: CandleInterval;
    }
  /** Without `since`: a snapshot, then live events. With it: the events after `since` (or a resync). */
  | { readonly op: "subscribe"; readonly channel: "private"; readonly since?: number }
);
type WithoutOp<F> = F extends unknown ? Omit<F, "op"> : never;
/** The fields of a subscribe; the server accepts (and echoes) a private channel's `since` here too. */
export type UnsubscribeFrame = { readonly op: "unsubscribe" } & WithoutOp<SubscribeFrame>;
/** The pong echoes `id` as sent, a number as a number. */
export interface PingFrame {
  readonly op: "ping";
  readonly id?: RequestId;
}
export type ClientFrame = SubscribeFrame | UnsubscribeFrame | PingFrame;

// ---- server → client ---------------------------------------------------------------------------------------------

export interface StreamLimits {
  readonly maxMessagesPerSec: number;
  readonly maxSubscriptions: number;
  readonly maxFrameBytes: number;
}

/** The first frame on every connection. */
export interface WelcomeFrame {
  readonly type: "welcome";
  readonly userId: string;
  readonly heartbeatMs: number;
  readonly limits: StreamLimits;
}

/** The server's answer to a subscribe: the request's fields echoed (the `op` aside). */
export type SubscribedFrame = { readonly type: "subscribed" } & WithoutOp<SubscribeFrame>;
/** The server's answer to an unsubscribe, likewise. */
export type UnsubscribedFrame = { readonly type: "unsubscribed" } & WithoutOp<UnsubscribeFrame>;

export interface QuoteFrame {
  readonly type: "quote";
  readonly asset: string;
  readonly market: string;
  readonly bid: string;
  readonly ask: string;
  readonly updatedAt: string;
  readonly source: "backpack" | "sim";
}

/** The current candle of `asset` at `interval` (bid prices), as it stands now; `openTime` identifies it. */
export type CandleFrame = { readonly type: "candle" } & Candle;

/**
 * The whole private state at `seq`: every event up to it is reflected, and perhaps some after it (applied, not yet
 * numbered into the store's contiguous run). Those still arrive as events; each carries whole views, not changes, so
 * applying them again in order converges on the account's state.
 */
export interface PrivateSnapshot {
  readonly seq: number;
  readonly balances: Balances;
  readonly trades: readonly TradeView[];
  readonly orders: readonly OrderView[];
  readonly summary: AccountSummary;
}
export type SnapshotFrame = { readonly type: "snapshot" } & PrivateSnapshot;
/** The events after the client's `since` are no longer (or not yet) available: start over from this state. */
export type ResyncFrame = { readonly type: "resync"; readonly reason: "beyond_retention" | "ahead" } & PrivateSnapshot;

interface EventHead {
  readonly type: "event";
  /** Per user, from 1, +1 per event: strictly in order, no gaps, no duplicates on one connection. */
  readonly seq: number;
  /** When the engine decided it (ISO time). */
  readonly time: string;
}
export type EventFrame = EventHead &
  (
    | { readonly event: "trade_opened"; readonly trade: TradeView }
    | {
        readonly event: "trade_updated";
        readonly change: "exits" | "trailing_activated" | "partial_close";
        readonly trade: TradeView;
      }
    /** One close of a trade, whole (`remainingQuantity` "0") or partial (then a trade_updated follows). */
    | { readonly event: "closed_order"; readonly trade: ClosedTradeView }
    /** An entry order placed (pending) or gone from the book (filled, cancelled, expired, rejected). */
    | { readonly event: "order_updated"; readonly order: OrderView }
    | { readonly event: "balances_changed"; readonly balances: Balances }
  );
export type PrivateEventName = EventFrame["event"];

/** The account summary as of event `seq` and the latest quotes. Not sequenced itself. */
export type SummaryFrame = { readonly type: "summary"; readonly seq: number } & AccountSummary;

export interface HeartbeatFrame {
  readonly type: "heartbeat";
  readonly time: string;
}
export interface PongFrame {
  readonly type: "pong";
  readonly id?: RequestId;
}
/**
 * A client frame the server could not accept, or a subscription it refused (which then changed nothing); the
 * connection stays open. `id`: the request's, when it carried one that could be read.
 */
export interface ErrorFrame {
  readonly type: "error";
  readonly code: string;
  readonly message: string;
  readonly field?: string;
  readonly id?: RequestId;
}

export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | QuoteFrame
  | CandleFrame
  | SnapshotFrame
  | ResyncFrame
  | EventFrame
  | SummaryFrame
  | HeartbeatFrame
  | PongFrame
  | ErrorFrame;

/**
 * The close codes the server sends, and what a client does on each. A socket the server cut without a close frame (it
 * stopped answering pings) is seen by its client as 1006, which no close frame carries.
 */
export const CLOSE_CODES = {
  /** The server is going away (restart, deploy): reconnect. */
  goingAway: 1001,
  /** A client frame that breaks RFC 6455 (unmasked, reserved bits set, an unknown opcode, …): a client's bug. */
  protocolError: 1002,
  /** A text frame (or a close reason) that is not valid UTF-8: a client's bug. */
  invalidText: 1007,
  /** A client frame over `maxFrameBytes`. */
  frameTooBig: 1009,
  /** The server failed on this socket (it could not read the account, say): reconnect and resume. */
  internalError: 1011,
  /** The client read too slowly and its send backlog overflowed: reconnect and resume. */
  tooSlow: 4008,
  /** Over `maxMessagesPerSec` for a few seconds. */
  tooManyMessages: 4029,
  /** The session was signed out, revoked or expired: do not reconnect without signing in again. */
  sessionEnded: 4401,
} as const;
