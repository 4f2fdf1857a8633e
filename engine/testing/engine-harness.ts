/**
 * Test support for engine specs: a tiny log writer that assigns increasing input ids at a controllable log time,
 * and applies each input with an invariant check after every step. Used only by tests.
 */
import type { EngineInput, EngineOutput, Instruction, OutputOf } from "../../contract/messages.ts";
import { apply } from "../core/apply.ts";
import { checkInvariants } from "../core/invariants.ts";
import { makeParams, type EngineParams } from "../core/params.ts";
import { createState, type EngineState } from "../core/state.ts";

export class EngineHarness {
  readonly state: EngineState;
  nowMs = 1_700_000_000_000;
  private seq = 0;
  private requests = 0;
  checkEveryStep = true;
  readonly log: { id: string; message: EngineInput }[] = [];
  /** What each entry of `log` produced, at the same index. */
  readonly outputs: EngineOutput[][] = [];

  constructor(params: Partial<EngineParams> = {}) {
    this.state = createState(makeParams(params));
  }

  /** A harness that carries on from `state` (a decoded snapshot, say), one millisecond after its last input. */
  static resume(state: EngineState): EngineHarness {
    const h = new EngineHarness(state.params);
    (h as { state: EngineState }).state = state;
    h.nowMs = state.lastInputMs + 1;
    return h;
  }

  /** Moves log time forward. */
  advance(ms: number): this {
    this.nowMs += ms;
    this.seq = 0;
    return this;
  }

  send(message: EngineInput): EngineOutput[] {
    const entry = { id: `${this.nowMs}-${this.seq++}`, message };
    this.log.push(entry);
    const out = apply(this.state, entry);
    this.outputs.push(out);
    if (this.checkEveryStep) checkInvariants(this.state);
    return out;
  }

  price(market: string, bid: string, ask: string): EngineOutput[] {
    return this.send({
      type: "price_update",
      market,
      bid,
      ask,
      exchangeTimeUs: String(this.nowMs * 1000),
      source: "sim",
    });
  }

  /** Sends an instruction and returns its order_response's answer plus every output of the step. */
  instruct(userId: string, instruction: Instruction, requestId = `r${++this.requests}`) {
    const outputs = this.send({ type: "user_instruction", requestId, userId, instruction });
    const response = outputs.find((o): o is OutputOf<"order_response"> => o.type === "order_response");
    if (response === undefined) throw new Error("no order_response for an instruction");
    return { answer: response.answer, outputs, response };
  }

  createAccount(userId: string) {
    return this.instruct(userId, { kind: "create_account" });
  }
}
