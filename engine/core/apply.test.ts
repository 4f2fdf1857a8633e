// The engine as a function over the log: inputs at or below the last applied id change nothing;
// outputs carry deterministic ids `<inputId>:<n>`; an instruction's order_response comes last.
import { describe, expect, it } from "vitest";
import { engineOutputSchema, type EngineInput, type EngineOutput } from "../../contract/messages.ts";
import { apply, applyMalformed } from "./apply.ts";
import { makeParams } from "./params.ts";
import { createState } from "./state.ts";
import { ETH, close, given, open, opened, usdOf } from "../testing/spec-support.ts";

const createBob: EngineInput = {
  type: "user_instruction",
  requestId: "late",
  userId: "bob",
  instruction: { kind: "create_account" },
};

describe("input ids", () => {
  it("an input at or below the last applied id produces nothing and changes nothing", () => {
    const h = given(); // alice's account at 1700000000000-0, ETH price at 1700000000000-1
    const last = h.state.lastInputId;
    expect(last).toBe("1700000000000-1");
    const idempotency = h.state.idempotency.size;
    for (const id of ["1700000000000-1", "1700000000000-0", "1699999999999-5", "0-0", "1699999999999-999999"]) {
      expect(apply(h.state, { id, message: createBob })).toEqual([]);
      expect(
        apply(h.state, {
          id,
          message: { type: "price_update", market: ETH, bid: "1", ask: "1", exchangeTimeUs: "1", source: "sim" },
        }),
      ).toEqual([]);
    }
    expect(h.state.accounts.has("bob")).toBe(false);
    expect(h.state.quotes[0]).toMatchObject({ bidTicks: 200_000 });
    expect(h.state.lastInputId).toBe(last);
    expect(h.state.idempotency.size).toBe(idempotency);
  });

  it("re-applying the log's own entries is a no-op", () => {
    const h = given();
    opened(h, "alice");
    for (const entry of h.log) expect(apply(h.state, entry)).toEqual([]);
    expect(usdOf(h, "alice")).toBe("9900");
    expect(h.state.accounts.get("alice")?.openTrades.size).toBe(1);
  });

  it("the next id after the last is applied, across a millisecond boundary too", () => {
    const h = given();
    expect(apply(h.state, { id: "1700000000000-2", message: createBob })).toHaveLength(2);
    const carol = { ...createBob, userId: "carol" };
    expect(apply(h.state, { id: "1700000000001-0", message: carol })).toHaveLength(2);
    expect(h.state.lastInputId).toBe("1700000000001-0");
    expect(h.state.lastInputMs).toBe(1_700_000_000_001);
  });

  it("compares ids numerically, not as text", () => {
    const h = given();
    apply(h.state, { id: "1700000000000-10", message: createBob });
    // "…-9" sorts after "…-10" as text, but 9 < 10
    expect(apply(h.state, { id: "1700000000000-9", message: { ...createBob, userId: "carol" } })).toEqual([]);
    expect(h.state.accounts.has("carol")).toBe(false);
  });
});

describe("outputs", () => {
  const ids = (outputs: EngineOutput[]) => outputs.map((o) => [o.id, o.inputId, o.type]);

  it("are numbered <inputId>:<n>, with the order_response last", () => {
    const h = given({ eth: ["2000", "2000"] });
    const { outputs } = open(h, "alice", { stopLoss: "1900" });
    const id = h.state.lastInputId;
    expect(ids(outputs)).toEqual([
      [`${id}:0`, id, "trade_opened"],
      [`${id}:1`, id, "balances_changed"],
      [`${id}:2`, id, "order_response"],
    ]);
  });

  it("a rejection is a lone order_response", () => {
    const h = given();
    const { outputs } = open(h, "alice", { leverage: 0 });
    expect(ids(outputs)).toEqual([[`${h.state.lastInputId}:0`, h.state.lastInputId, "order_response"]]);
  });

  it("a tick that closes a trade numbers its outputs after the quote", () => {
    const h = given();
    opened(h, "alice", { stopLoss: "1900" });
    const outputs = h.price(ETH, "1900", "1900");
    const id = h.state.lastInputId;
    expect(ids(outputs)).toEqual([
      [`${id}:0`, id, "quote_updated"],
      [`${id}:1`, id, "closed_order"],
      [`${id}:2`, id, "balances_changed"],
    ]);
  });

  it("every output of a busy scenario satisfies the contract", () => {
    const h = given({ users: ["alice", "bob"] });
    const all: EngineOutput[] = [];
    const take = (outputs: EngineOutput[]) => all.push(...outputs);
    take(h.createAccount("alice").outputs);
    take(open(h, "alice", { stopLoss: "1900", takeProfit: "2100" }).outputs);
    take(open(h, "bob", { side: "short", leverage: 100 }).outputs);
    take(h.instruct("bob", { kind: "spot_order", asset: "ETH", side: "buy", quantity: "0.0001" }).outputs);
    take(close(h, "alice", "T0-404").outputs);
    take(h.price(ETH, "2100", "2100"));
    take(open(h, "alice").outputs);
    take(close(h, "alice", "T0-4").outputs);
    for (const o of all) expect(engineOutputSchema.safeParse(o)).toMatchObject({ success: true });
    expect(new Set(all.map((o) => o.type))).toEqual(
      new Set(["balances_changed", "order_response", "trade_opened", "quote_updated", "closed_order"]),
    );
    expect(new Set(all.map((o) => o.id)).size).toBe(all.length);
  });
});

describe("applyMalformed", () => {
  it("advances the cursor and answers the named sender with INVALID_INSTRUCTION, once", () => {
    const state = createState(makeParams());
    const out = applyMalformed(state, "5-0", { userId: "alice", requestId: "r1" }, "instruction.kind: invalid");
    expect(out).toEqual([
      {
        id: "5-0:0",
        inputId: "5-0",
        type: "order_response",
        userId: "alice",
        requestId: "r1",
        answer: {
          ok: false,
          error: { code: "INVALID_INSTRUCTION", message: "The instruction is malformed. instruction.kind: invalid" },
        },
      },
    ]);
    expect(state.lastInputId).toBe("5-0");
    expect(applyMalformed(state, "5-0", { userId: "alice", requestId: "r1" }, "again")).toEqual([]);
    expect(applyMalformed(state, "6-0", undefined, "no sender")).toEqual([]);
    expect(state.lastInputId).toBe("6-0");
    expect(state.idempotency.size).toBe(0);
  });

  it("answers a request id already answered with its first answer", () => {
    const state = createState(makeParams());
    const create = apply(state, {
      id: "5-0",
      message: { type: "user_instruction", userId: "alice", requestId: "r1", instruction: { kind: "create_account" } },
    });
    const first = create.find((o) => o.type === "order_response");
    const out = applyMalformed(state, "6-0", { userId: "alice", requestId: "r1" }, "instruction.kind: invalid");
    expect(out).toEqual([
      { id: "6-0:0", inputId: "6-0", type: "order_response", userId: "alice", requestId: "r1", answer: first?.answer },
    ]);
    expect(first?.answer.ok).toBe(true);
    // A new request id still gets the refusal.
    const fresh = applyMalformed(state, "7-0", { userId: "alice", requestId: "r2" }, "instruction.kind: invalid");
    expect(fresh[0]).toMatchObject({ answer: { ok: false, error: { code: "INVALID_INSTRUCTION" } } });
  });
});
