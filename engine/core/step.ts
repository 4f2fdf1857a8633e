/**
 * One application of one input: its id, its log time and the outputs it produces, in order. Output ids are
 * `<input id>:<n>`, so a replay of the same input re-emits outputs with the same ids.
 *
 * A user's private outputs (contract/messages.ts `PrivateOutput`) are built only by the `emit…` functions here, each
 * with `seq: ++account.eventSeq` in its literal: numbered in output order, from state a snapshot keeps, so a replay
 * numbers them alike. `emit` takes only the other outputs, so no private output can skip its number.
 */
import type {
  Balances,
  ClosedTradeView,
  EngineOutput,
  OrderView,
  OutputOf,
  PrivateOutput,
  TradeView,
} from "../../contract/messages.ts";
import type { Account } from "./state.ts";

export interface Step {
  readonly inputId: string;
  readonly nowMs: number;
  readonly outputs: EngineOutput[];
}

/**
 * The id the next output of this step gets. Outputs are built with their ids (and private ones with their seq) in
 * the literal, not added after, so each is one allocation of one shape: this is the hot path of every tick and order.
 */
export function nextOutputId(step: Step): string {
  return `${step.inputId}:${step.outputs.length}`;
}

/** Appends an order_response or quote_updated built with `id: nextOutputId(step)` and `inputId: step.inputId`. */
export function emit(step: Step, output: Exclude<EngineOutput, PrivateOutput>): void {
  step.outputs.push(output);
}

export function emitTradeOpened(step: Step, account: Account, trade: TradeView): void {
  step.outputs.push({
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "trade_opened",
    userId: account.userId,
    seq: ++account.eventSeq,
    trade,
  });
}

export function emitTradeUpdated(
  step: Step,
  account: Account,
  change: OutputOf<"trade_updated">["change"],
  trade: TradeView,
): void {
  step.outputs.push({
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "trade_updated",
    userId: account.userId,
    seq: ++account.eventSeq,
    change,
    trade,
  });
}

export function emitClosedOrder(step: Step, account: Account, trade: ClosedTradeView): void {
  step.outputs.push({
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "closed_order",
    userId: account.userId,
    seq: ++account.eventSeq,
    trade,
  });
}

export function emitOrderUpdated(step: Step, account: Account, order: OrderView): void {
  step.outputs.push({
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "order_updated",
    userId: account.userId,
    seq: ++account.eventSeq,
    order,
  });
}

/** A user's balances after they changed: every handler that moves money ends with one (the worker's read model). */
export function emitBalancesChanged(step: Step, account: Account, balances: Balances): void {
  step.outputs.push({
    id: nextOutputId(step),
    inputId: step.inputId,
    type: "balances_changed",
    userId: account.userId,
    seq: ++account.eventSeq,
    balances,
  });
}

const MAX_LOG_MS = 253_402_300_799_999;

/** Parses a Redis stream entry id "<ms>-<seq>". A malformed id is a runner bug, not user input: it throws. */
export function parseInputId(id: string): { ms: number; seq: number } {
  let ms = 0;
  let seq = 0;
  let i = 0;
  const n = id.length;
  for (; i < n; i++) {
    const c = id.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    ms = ms * 10 + c;
  }
  const dash = i;
  for (i++; i < n; i++) {
    const c = id.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    seq = seq * 10 + c;
  }
  // Times past year 9999 are refused too: they are no clock's, and could not be shown as ISO 8601.
  if (
    dash === 0 ||
    dash >= n - 1 ||
    id.charCodeAt(dash) !== 45 ||
    i !== n ||
    ms > MAX_LOG_MS ||
    !Number.isSafeInteger(seq)
  ) {
    throw new Error(`malformed input id: ${id}`);
  }
  return { ms, seq };
}

/** True when stream id `a` comes after `b`. */
export function isAfterId(a: string, b: string): boolean {
  const x = parseInputId(a);
  const y = parseInputId(b);
  return x.ms > y.ms || (x.ms === y.ms && x.seq > y.seq);
}

// Every open, close and quote carries a time; Date#toISOString costs more than the rest of a tick, so times are
// formatted by integer arithmetic (days → civil date, Hinnant's algorithm) and the last one is memoized.
let lastIsoMs = Number.NaN;
let lastIso = "";

/** `new Date(ms).toISOString()` for years 1970–9999, faster. */
export function isoTime(ms: number): string {
  if (ms === lastIsoMs) return lastIso;
  if (!(ms >= 0 && ms < 253_402_300_800_000)) return new Date(ms).toISOString();
  const days = Math.floor(ms / 86_400_000);
  let rest = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  const millis = rest - seconds * 1000;
  lastIso = `${year}-${two(month)}-${two(day)}T${two(hours)}:${two(minutes)}:${two(seconds)}.${millis < 10 ? "00" : millis < 100 ? "0" : ""}${millis}Z`;
  lastIsoMs = ms;
  return lastIso;
}

function two(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}
