/**
 * Givens and readers shared by the engine specs (`*.test.ts` in this folder); used only by tests. Every spec starts
 * from an EngineHarness, so the invariant check runs after each step.
 */
import { expect } from "vitest";
import type {
  Answer,
  EngineOutput,
  Instruction,
  InstructionResult,
  OrderView,
  OutputOf,
  TradeView,
} from "../../contract/messages.ts";
import { formatUsd } from "../../contract/money.ts";
import { apply } from "../core/apply.ts";
import type { EngineParams } from "../core/params.ts";
import { createState, tradeSeq } from "../core/state.ts";
import { decodeSnapshot, encodeSnapshot } from "../snapshot/codec.ts";
import { stateHash } from "../snapshot/hash.ts";
import { EngineHarness } from "./engine-harness.ts";

export const ETH = "ETH_USDC_PERP";
export const SOL = "SOL_USDC_PERP";

type OpenFields = Omit<Extract<Instruction, { kind: "open_trade" }>, "kind">;
type EntryFields = Omit<Extract<Instruction, { kind: "place_order" }>, "kind">;

/** A harness in which every user has the starting grant and ETH quotes `bid`/`ask`. */
export function given(
  opts: { users?: string[]; eth?: [bid: string, ask: string]; params?: Partial<EngineParams> } = {},
): EngineHarness {
  const h = new EngineHarness(opts.params ?? {});
  for (const user of opts.users ?? ["alice"]) resultOf(h.createAccount(user).answer, "create_account");
  const [bid, ask] = opts.eth ?? ["2000", "2000"];
  h.price(ETH, bid, ask);
  return h;
}

/** The result of a successful answer of the expected kind; throws (failing the spec) otherwise. */
export function resultOf<K extends InstructionResult["kind"]>(
  answer: Answer,
  kind: K,
): Extract<InstructionResult, { kind: K }> {
  if (!answer.ok) throw new Error(`expected ${kind} to succeed, got ${answer.error.code}: ${answer.error.message}`);
  if (answer.result.kind !== kind) throw new Error(`expected a ${kind} result, got ${answer.result.kind}`);
  return answer.result as Extract<InstructionResult, { kind: K }>;
}

/** The rejection code of a refused answer; throws (failing the spec) when it succeeded. */
export function codeOf(answer: Answer): string {
  if (answer.ok) throw new Error(`expected a rejection, got a ${answer.result.kind} result`);
  return answer.error.code;
}

/** The message of a refused answer; throws (failing the spec) when it succeeded. */
export function messageOf(answer: Answer): string {
  if (answer.ok) throw new Error(`expected a rejection, got a ${answer.result.kind} result`);
  return answer.error.message;
}

/** Sends open_trade with defaults: ETH long, margin 100 USD, leverage 10. */
export function open(h: EngineHarness, user: string, fields: Partial<OpenFields> = {}, requestId?: string) {
  const instruction = {
    kind: "open_trade" as const,
    asset: "ETH",
    side: "long" as const,
    margin: "100",
    leverage: 10,
    ...fields,
  };
  return requestId === undefined ? h.instruct(user, instruction) : h.instruct(user, instruction, requestId);
}

/** Opens a trade that must succeed and returns its view. */
export function opened(h: EngineHarness, user: string, fields: Partial<OpenFields> = {}): TradeView {
  return resultOf(open(h, user, fields).answer, "open_trade").trade;
}

/** Sends place_order with defaults: ETH long limit, margin 100 USD, leverage 10, at `price`. */
export function place(
  h: EngineHarness,
  user: string,
  price: string,
  fields: Partial<EntryFields> = {},
  requestId?: string,
) {
  const instruction = {
    kind: "place_order" as const,
    ...entry(price, fields),
  };
  return requestId === undefined ? h.instruct(user, instruction) : h.instruct(user, instruction, requestId);
}

/** An entry order's terms with place's defaults: ETH long limit, margin 100 USD, leverage 10. */
export function entry(price: string, fields: Partial<EntryFields> = {}): EntryFields {
  return { asset: "ETH", side: "long", type: "limit", price, margin: "100", leverage: 10, ...fields };
}

/** Places an order that must be accepted and returns its view. */
export function placed(h: EngineHarness, user: string, price: string, fields: Partial<EntryFields> = {}): OrderView {
  return resultOf(place(h, user, price, fields).answer, "place_order").order;
}

export function close(h: EngineHarness, user: string, tradeId: string) {
  return h.instruct(user, { kind: "close_trade", tradeId });
}

/** Whether `user` has the trade with this (wire) id open. */
export function isOpen(h: EngineHarness, user: string, tradeId: string): boolean {
  return h.state.accounts.get(user)?.openTrades.has(tradeSeq(h.state.params.shard, tradeId)) ?? false;
}

/** A user's free USD balance as the wire shows it. */
export function usdOf(h: EngineHarness, user: string): string {
  const account = h.state.accounts.get(user);
  if (account === undefined) throw new Error(`no account for ${user}`);
  return formatUsd(account.usd);
}

export function ofType<T extends EngineOutput["type"]>(outputs: readonly EngineOutput[], type: T): OutputOf<T>[] {
  return outputs.filter((o): o is OutputOf<T> => o.type === type);
}

/**
 * Restarts `h`'s log from a snapshot taken after its first `cut` entries, as a restarted engine would, and expects
 * the rest to give every output `h` gave and to end in `h`'s state.
 */
export function expectSameAfterRestore(h: EngineHarness, cut: number): void {
  const before = createState(h.state.params);
  for (const entry of h.log.slice(0, cut)) apply(before, entry);
  const restored = decodeSnapshot(encodeSnapshot(before));
  const outputs = h.log.slice(cut).map((entry) => apply(restored, entry));
  expect(outputs).toEqual(h.outputs.slice(cut));
  expect(stateHash(restored)).toBe(stateHash(h.state));
}
