/**
 * The engine: `apply(state, input) → outputs`. Pure and deterministic: no I/O, no clock (time is the input id's
 * milliseconds), no randomness, no environment. Inputs at or below the last applied id are already in the state
 * and produce nothing, so replaying an overlapping tail is harmless. Before any input (a price, an instruction, even a
 * malformed entry) is applied, the pending orders its log time has reached expire (pending-fill.ts).
 *
 * User mistakes come back as rejection codes inside an `order_response`; an exception means a broken invariant
 * (a bug), and the runner then crashes and recovers from snapshot + log.
 */
import type { EngineInput, EngineOutput, UserInstruction } from "../../contract/messages.ts";
import { createAccount } from "./accounts.ts";
import { recall, remember } from "./idempotency.ts";
import { modifyTrade } from "./modify.ts";
import { expireOrders } from "./pending-fill.ts";
import { cancelOrder, placeOco, placeOrder } from "./pending-place.ts";
import { applyPriceUpdate } from "./quotes.ts";
import { answerOf, refuse, type Outcome } from "./receipts.ts";
import { spotOrder } from "./spot.ts";
import type { Account, EngineState } from "./state.ts";
import { emit, nextOutputId, parseInputId, type Step } from "./step.ts";
import { closeTradeByUser, openTrade } from "./trading.ts";

export interface LogEntry {
  /** Stream entry id "<ms>-<seq>". */
  readonly id: string;
  readonly message: EngineInput;
}

export function apply(state: EngineState, entry: LogEntry): EngineOutput[] {
  if (!advance(state, entry.id)) return [];
  const step: Step = { inputId: entry.id, nowMs: state.lastInputMs, outputs: [] };
  expireOrders(state, step);
  const message = entry.message;
  switch (message.type) {
    case "price_update":
      applyPriceUpdate(state, step, message);
      break;
    case "user_instruction":
      applyInstruction(state, step, message);
      break;
    default:
      return unreachable(message);
  }
  return step.outputs;
}

/**
 * A log entry that failed the contract (see contract/stream-fields.ts): it still advances the cursor, so the log
 * stays in step with the state, and when it names a user and request id that waiter gets an INVALID_INSTRUCTION
 * answer instead of a timeout — or, when that request id was already answered, its first answer (the same id
 * always gets the same answer). Deterministic like `apply`: a replay answers it the same way.
 */
export function applyMalformed(
  state: EngineState,
  id: string,
  sender: { userId: string; requestId: string } | undefined,
  reason: string,
): EngineOutput[] {
  if (!advance(state, id)) return [];
  const step: Step = { inputId: id, nowMs: state.lastInputMs, outputs: [] };
  expireOrders(state, step);
  if (sender === undefined) return step.outputs;
  const { userId, requestId } = sender;
  // A request id already answered keeps its first answer, malformed retry or not.
  const account = state.accounts.get(userId);
  const first = account === undefined ? undefined : recall(state, account, requestId, step.nowMs);
  const answer = first === undefined ? refuse("INVALID_INSTRUCTION", reason).answer : answerOf(state, first);
  emit(step, { id: nextOutputId(step), inputId: id, type: "order_response", userId, requestId, answer });
  return step.outputs;
}

/** Moves the cursor to `id`, or says the entry is already applied. */
function advance(state: EngineState, id: string): boolean {
  const { ms, seq } = parseInputId(id);
  if (ms < state.lastInputMs || (ms === state.lastInputMs && seq <= state.lastInputSeq)) return false;
  state.lastInputId = id;
  state.lastInputMs = ms;
  state.lastInputSeq = seq;
  return true;
}

function applyInstruction(state: EngineState, step: Step, message: UserInstruction): void {
  const { userId, requestId } = message;
  const account = state.accounts.get(userId);
  const remembered = account === undefined ? undefined : recall(state, account, requestId, step.nowMs);
  let answer;
  if (remembered === undefined) {
    const outcome = execute(state, step, message, account);
    // create_account may just have made the account the answer is remembered on.
    const owner = account ?? state.accounts.get(userId);
    if (owner !== undefined) remember(state, owner, requestId, step.nowMs, outcome.receipt);
    answer = outcome.answer;
  } else {
    answer = answerOf(state, remembered);
  }
  // The response comes last, after the read-model changes it depends on.
  emit(step, { id: nextOutputId(step), inputId: step.inputId, type: "order_response", requestId, userId, answer });
}

function execute(
  state: EngineState,
  step: Step,
  { userId, instruction }: UserInstruction,
  account: Account | undefined,
): Outcome {
  if (instruction.kind === "create_account") return createAccount(state, step, userId);
  if (account === undefined) return refuse("ACCOUNT_NOT_FOUND");
  switch (instruction.kind) {
    case "open_trade":
      return openTrade(state, step, account, instruction);
    case "close_trade":
      return closeTradeByUser(state, step, account, instruction);
    case "spot_order":
      return spotOrder(state, step, account, instruction);
    case "modify_trade":
      return modifyTrade(state, step, account, instruction);
    case "place_order":
      return placeOrder(state, step, account, instruction);
    case "place_oco":
      return placeOco(state, step, account, instruction);
    case "cancel_order":
      return cancelOrder(state, step, account, instruction.orderId);
    default:
      return unreachable(instruction);
  }
}

function unreachable(x: never): never {
  throw new Error(`unhandled input: ${JSON.stringify(x)}`);
}
