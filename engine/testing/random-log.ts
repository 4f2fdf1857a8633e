/**
 * fast-check generator of realistic, adversarial engine logs for property tests: a few users (one never
 * created), prices on a random walk with spreads and sudden gaps, time that sometimes jumps past the staleness
 * limit, and instructions that are often invalid (bad amounts, unknown assets, foreign or closed trades,
 * reused request ids). Closes are of all of a trade or of part (a quantity or a percent, sometimes both). Trades get
 * trailing stops (at open and by modify_trade) and their exits moved. Pending entry orders and OCO pairs (often on
 * the wrong side of the market, some expiring) are placed and cancelled. Commands are interpreted into concrete
 * `LogEntry`s with increasing ids.
 */
import fc from "fast-check";
import type { EntryOrder, Instruction, EngineInput, TrailingStopSpec } from "../../contract/messages.ts";
import type { LogEntry } from "../core/apply.ts";

const USERS = ["u1", "u2", "u3", "ghost"];
const MARKETS = [
  { market: "ETH_USDC_PERP", asset: "ETH", midTicks: 430_000, decimals: 2 },
  { market: "SOL_USDC_PERP", asset: "SOL", midTicks: 20_000, decimals: 2 },
  { market: "ADA_USDC_PERP", asset: "ADA", midTicks: 90_000, decimals: 5 },
] as const;

/** A trailing stop as offsets from the market's mid: a distance in basis points, or a percent; maybe an activation. */
interface TrailCommand {
  distanceBps: number | null;
  percent: string;
  activationBps: number | null;
}

/** An exit in modify_trade: absent (undefined), removed (null), or set at an offset from the mid in basis points. */
type ExitChange = number | null | undefined;

type Command =
  | { c: "tick"; m: number; moveBps: number; spreadBps: number }
  | { c: "wait"; ms: number }
  | { c: "create"; u: number }
  | {
      c: "open";
      u: number;
      m: number;
      long: boolean;
      margin: string;
      leverage: number;
      slBps: number | null;
      tpBps: number | null;
      trail: TrailCommand | null;
      req: number | null;
    }
  | {
      c: "modify";
      u: number;
      /** The market whose mid prices the levels: when it is not the trade's, the levels are mostly refused. */
      m: number;
      trade: number;
      slBps: ExitChange;
      tpBps: ExitChange;
      trail: TrailCommand | null | undefined;
      req: number | null;
    }
  | { c: "close"; u: number; trade: number; part: ClosePart; req: number | null }
  | { c: "spot"; u: number; m: number; buy: boolean; quantity: string; req: number | null }
  | { c: "place"; u: number; leg: Leg; req: number | null }
  | { c: "oco"; u: number; legs: [Leg, Leg]; req: number | null }
  | { c: "cancel"; u: number; order: number; req: number | null };

/** A pending entry order, its price (and exits) as offsets from the market's mid; often on the wrong side. */
interface Leg {
  m: number;
  long: boolean;
  stop: boolean;
  priceBps: number;
  margin: string;
  leverage: number;
  /** Stop-loss and take-profit as distances from the price, away from it on the user's side when positive. */
  slBps: number | null;
  tpBps: number | null;
  /** Expiry after the log time; null: good till cancelled; ≤ 0: already past (refused). */
  expiresInMs: number | null;
}

/** What part of a trade a close asks for: all of it (null), a quantity, a percent, or (refused) both. */
type ClosePart = null | { quantity?: string; percent?: string };

const user = fc.integer({ min: 0, max: USERS.length - 1 });
const market = fc.integer({ min: 0, max: MARKETS.length - 1 });
const reqId = fc.option(fc.integer({ min: 0, max: 5 }), { freq: 3 });
const amount = fc.oneof(
  fc.integer({ min: 1, max: 5_000 }).map(String),
  fc
    .tuple(fc.integer({ min: 0, max: 900 }), fc.integer({ min: 0, max: 999_999 }))
    .map(([a, b]) => `${a}.${String(b).padStart(6, "0")}`),
  fc.constantFrom("0", "0.0000001", "999999999", "12.5", "1"),
);

const closeQuantity = fc.oneof(
  fc.integer({ min: 1, max: 3_000 }).map((n) => (n / 100).toFixed(2)),
  fc.constantFrom("0.0001", "0.1", "1", "0", "0.00001", "5000"),
);
const closePercent = fc.oneof(
  fc.integer({ min: 1, max: 10_000 }).map((n) => (n / 100).toFixed(2)),
  fc.constantFrom("50", "100", "99.99", "0.01", "0", "100.01", "12.345"),
);
const closePart: fc.Arbitrary<ClosePart> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: closeQuantity.map((quantity) => ({ quantity })) },
  { weight: 2, arbitrary: closePercent.map((percent) => ({ percent })) },
  { weight: 1, arbitrary: fc.record({ quantity: closeQuantity, percent: closePercent }) },
);
const trail: fc.Arbitrary<TrailCommand> = fc.record({
  distanceBps: fc.option(fc.integer({ min: -5, max: 600 }), { freq: 2 }),
  percent: fc.constantFrom("0.5", "1", "2.25", "7", "0", "100", "0.001"),
  activationBps: fc.option(fc.integer({ min: -300, max: 300 })),
});
const exitChange: fc.Arbitrary<ExitChange> = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.integer({ min: -2000, max: 2000 }),
);
const leg: fc.Arbitrary<Leg> = fc.record({
  m: market,
  long: fc.boolean(),
  stop: fc.boolean(),
  priceBps: fc.integer({ min: -400, max: 400 }),
  margin: fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 400 }).map(String) },
    { weight: 1, arbitrary: amount },
  ),
  leverage: fc.oneof(
    { weight: 9, arbitrary: fc.integer({ min: 1, max: 50 }) },
    { weight: 1, arbitrary: fc.constant(0) },
  ),
  // Distances from the order price, on the user's side when positive (so that most legs are valid).
  slBps: fc.option(fc.integer({ min: -100, max: 600 })),
  tpBps: fc.option(fc.integer({ min: -100, max: 600 })),
  expiresInMs: fc.option(fc.oneof(fc.integer({ min: -5, max: 3_000 }), fc.constant(31_000))),
});

/** Trade, order and spot ids share one sequence: low numbers are the ones most likely to name an open trade. */
const tradeSeqArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 30 }) },
);

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      c: fc.constant("tick" as const),
      m: market,
      moveBps: fc.oneof(
        { weight: 9, arbitrary: fc.integer({ min: -150, max: 150 }) },
        { weight: 1, arbitrary: fc.integer({ min: -3000, max: 3000 }) },
      ),
      spreadBps: fc.integer({ min: 0, max: 20 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      c: fc.constant("wait" as const),
      ms: fc.oneof(fc.integer({ min: 1, max: 2_000 }), fc.constant(31_000)),
    }),
  },
  { weight: 2, arbitrary: fc.record({ c: fc.constant("create" as const), u: fc.integer({ min: 0, max: 2 }) }) },
  {
    weight: 6,
    arbitrary: fc.record({
      c: fc.constant("open" as const),
      u: user,
      m: market,
      long: fc.boolean(),
      margin: amount,
      leverage: fc.oneof(
        { weight: 9, arbitrary: fc.integer({ min: 1, max: 100 }) },
        { weight: 1, arbitrary: fc.constantFrom(0, 101, 2.5, -3) },
      ),
      slBps: fc.option(fc.integer({ min: -2000, max: 2000 })),
      tpBps: fc.option(fc.integer({ min: -2000, max: 2000 })),
      trail: fc.option(trail, { freq: 2 }),
      req: reqId,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      c: fc.constant("modify" as const),
      u: user,
      m: market,
      trade: tradeSeqArb,
      slBps: exitChange,
      tpBps: exitChange,
      trail: fc.oneof(fc.constant(undefined), fc.constant(null), trail),
      req: reqId,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      c: fc.constant("close" as const),
      u: user,
      trade: tradeSeqArb,
      part: closePart,
      req: reqId,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      c: fc.constant("spot" as const),
      u: user,
      m: market,
      buy: fc.boolean(),
      quantity: amount,
      req: reqId,
    }),
  },
  { weight: 5, arbitrary: fc.record({ c: fc.constant("place" as const), u: user, leg, req: reqId }) },
  {
    weight: 2,
    arbitrary: fc.record({ c: fc.constant("oco" as const), u: user, legs: fc.tuple(leg, leg), req: reqId }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      c: fc.constant("cancel" as const),
      // Sequence numbers are shared with trades, so many of these name no order of this user.
      u: user,
      order: fc.integer({ min: 1, max: 20 }),
      req: reqId,
    }),
  },
);

/** Every log starts with the three real users' accounts and a quote per market, so most orders can act. */
const PRELUDE: readonly Command[] = [
  { c: "create", u: 0 },
  { c: "create", u: 1 },
  { c: "create", u: 2 },
  ...MARKETS.map((_, m) => ({ c: "tick" as const, m, moveBps: 0, spreadBps: 2 })),
];

export const commandsArbitrary = (maxLength = 120) =>
  fc.array(command, { minLength: 1, maxLength, size: "max" }).map((cmds) => [...PRELUDE, ...cmds]);

/** Turns commands into log entries with increasing ids starting at `startMs`. */
export function toLog(commands: readonly Command[], startMs = 1_700_000_000_000): LogEntry[] {
  const mids: number[] = MARKETS.map((m) => m.midTicks);
  let nowMs = startMs;
  let seq = 0;
  let n = 0;
  const entries: LogEntry[] = [];
  const push = (message: EngineInput) => entries.push({ id: `${nowMs}-${seq++}`, message });
  const requestId = (req: number | null) => (req === null ? `auto-${++n}` : `fixed-${req}`);
  const at = (m: number, bps: number) => Math.max(1, Math.round((mids[m]! * (10_000 + bps)) / 10_000));
  const price = (m: number, ticks: number) => (ticks / 10 ** MARKETS[m]!.decimals).toFixed(MARKETS[m]!.decimals);
  for (const cmd of commands) {
    nowMs += 1 + (cmd.c === "wait" ? cmd.ms : 0);
    seq = 0;
    switch (cmd.c) {
      case "wait":
        break;
      case "tick": {
        mids[cmd.m] = at(cmd.m, cmd.moveBps);
        const half = Math.max(1, Math.round((mids[cmd.m]! * cmd.spreadBps) / 20_000));
        const bid = Math.max(1, mids[cmd.m]! - half);
        push({
          type: "price_update",
          market: MARKETS[cmd.m]!.market,
          bid: price(cmd.m, bid),
          ask: price(cmd.m, bid + 2 * half),
          exchangeTimeUs: `${nowMs}000`,
          source: "sim",
        });
        break;
      }
      default: {
        const instruction = toInstruction(
          cmd,
          (m, bps) => price(m, at(m, bps)),
          // Never negative: the contract refuses a negative decimal before the engine sees it (a distance of 0 reaches
          // the engine and is refused there).
          (m, bps) => price(m, Math.max(0, Math.round((mids[m]! * bps) / 10_000))),
          nowMs,
        );
        const req = cmd.c === "create" ? null : cmd.req;
        push({ type: "user_instruction", requestId: requestId(req), userId: USERS[cmd.u]!, instruction });
      }
    }
  }
  return entries;
}

function toInstruction(
  cmd: Exclude<Command, { c: "tick" } | { c: "wait" }>,
  priceAt: (m: number, bps: number) => string,
  distanceOf: (m: number, bps: number) => string,
  nowMs: number,
): Instruction {
  const trailingStop = (m: number, t: TrailCommand): TrailingStopSpec => {
    const spec: TrailingStopSpec =
      t.distanceBps === null ? { percent: t.percent } : { distance: distanceOf(m, t.distanceBps) };
    if (t.activationBps !== null) spec.activationPrice = priceAt(m, t.activationBps);
    return spec;
  };
  const entry = (l: Leg): EntryOrder => {
    const order: EntryOrder = {
      asset: MARKETS[l.m]!.asset,
      side: l.long ? "long" : "short",
      type: l.stop ? "stop" : "limit",
      price: priceAt(l.m, l.priceBps),
      margin: l.margin,
      leverage: l.leverage,
    };
    const away = l.long ? -1 : 1;
    if (l.slBps !== null) order.stopLoss = priceAt(l.m, l.priceBps + away * l.slBps);
    if (l.tpBps !== null) order.takeProfit = priceAt(l.m, l.priceBps - away * l.tpBps);
    if (l.expiresInMs !== null) order.expiresAtMs = nowMs + l.expiresInMs;
    return order;
  };
  switch (cmd.c) {
    case "create":
      return { kind: "create_account" };
    case "open": {
      const order: Instruction = {
        kind: "open_trade",
        asset: MARKETS[cmd.m]!.asset,
        side: cmd.long ? "long" : "short",
        margin: cmd.margin,
        leverage: cmd.leverage,
      };
      if (cmd.slBps !== null) order.stopLoss = priceAt(cmd.m, cmd.slBps);
      if (cmd.tpBps !== null) order.takeProfit = priceAt(cmd.m, cmd.tpBps);
      if (cmd.trail !== null) order.trailingStop = trailingStop(cmd.m, cmd.trail);
      return order;
    }
    case "modify": {
      const modify: Instruction = { kind: "modify_trade", tradeId: `T0-${cmd.trade}` };
      if (cmd.slBps !== undefined) modify.stopLoss = cmd.slBps === null ? null : priceAt(cmd.m, cmd.slBps);
      if (cmd.tpBps !== undefined) modify.takeProfit = cmd.tpBps === null ? null : priceAt(cmd.m, cmd.tpBps);
      if (cmd.trail !== undefined) modify.trailingStop = cmd.trail === null ? null : trailingStop(cmd.m, cmd.trail);
      return modify;
    }
    case "close":
      return { kind: "close_trade", tradeId: `T0-${cmd.trade}`, ...cmd.part };
    case "spot":
      return {
        kind: "spot_order",
        asset: MARKETS[cmd.m]!.asset,
        side: cmd.buy ? "buy" : "sell",
        quantity: cmd.quantity,
      };
    case "place":
      return { kind: "place_order", ...entry(cmd.leg) };
    case "oco":
      return { kind: "place_oco", legs: [entry(cmd.legs[0]), entry(cmd.legs[1])] };
    case "cancel":
      return { kind: "cancel_order", orderId: `P0-${cmd.order}` };
  }
}
