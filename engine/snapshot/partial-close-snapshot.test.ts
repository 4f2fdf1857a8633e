// A partly closed trade and its remembered answer survive a snapshot: the restored engine holds the shrunk trade,
// answers the duplicate with the answer first sent, and fires the rest's exits as the original would.
import { describe, expect, it } from "vitest";
import type { EngineInput } from "../../contract/messages.ts";
import { apply } from "../core/apply.ts";
import { checkInvariants } from "../core/invariants.ts";
import { tradeSeq } from "../core/state.ts";
import { ETH, given, opened, resultOf } from "../testing/spec-support.ts";
import { decodeSnapshot, encodeSnapshot } from "./codec.ts";
import { stateHash } from "./hash.ts";

describe("snapshot of a partly closed trade", () => {
  it("round-trips, answers the duplicate as first sent, and fires the rest's stop-loss alike", () => {
    const h = given();
    const trade = opened(h, "alice", { stopLoss: "1900", takeProfit: "2200" }); // 5000 steps, 100 USD
    const part = h.instruct("alice", { kind: "close_trade", tradeId: trade.id, quantity: "0.2" }, "p1");
    resultOf(part.answer, "close_trade");

    const bytes = encodeSnapshot(h.state);
    const restored = decodeSnapshot(bytes);
    checkInvariants(restored);
    expect(encodeSnapshot(restored)).toEqual(bytes);
    expect(stateHash(restored)).toBe(stateHash(h.state));
    const rest = restored.accounts.get("alice")!.openTrades.get(tradeSeq(0, trade.id))!;
    // 3000 steps and 1e8 − ⌊1e8 × 2000 / 5000⌋ micros = 60 USD of margin
    expect([rest.quantitySteps, rest.marginMicros]).toEqual([3000, 60_000_000]);

    const next = (message: EngineInput, n: number) => ({ id: `${h.nowMs + 1}-${n}`, message });
    const duplicate = next(
      {
        type: "user_instruction",
        requestId: "p1",
        userId: "alice",
        instruction: { kind: "close_trade", tradeId: trade.id, quantity: "0.2" },
      },
      0,
    );
    const tick = next(
      {
        type: "price_update",
        market: ETH,
        bid: "1900",
        ask: "1900",
        exchangeTimeUs: `${h.nowMs + 1}000`,
        source: "sim",
      },
      1,
    );
    const fromRestore = [apply(restored, duplicate), apply(restored, tick)];
    const original = [apply(h.state, duplicate), apply(h.state, tick)];
    expect(fromRestore).toEqual(original);
    expect(fromRestore[0]).toEqual([expect.objectContaining({ type: "order_response", answer: part.answer })]);
    expect(fromRestore[1]?.find((o) => o.type === "closed_order")).toMatchObject({
      trade: { closeReason: "stop_loss", quantity: "0.3", margin: "60", pnl: "-30" }, // (1900 − 2000) × 0.3
    });
    expect(stateHash(restored)).toBe(stateHash(h.state));
  });
});
