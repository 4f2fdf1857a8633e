import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ASSETS } from "../../contract/markets.ts";
import { isPrivateOutput, type Answer } from "../../contract/messages.ts";
import { commandsArbitrary, toLog } from "../testing/random-log.ts";
import { apply } from "./apply.ts";
import { checkInvariants } from "./invariants.ts";
import { makeParams } from "./params.ts";
import { answerOf } from "./receipts.ts";
import { createState } from "./state.ts";
import { parseInputId } from "./step.ts";

const WITH_MINIMUMS = ASSETS.map((a) =>
  a.symbol === "ETH" || a.symbol === "SOL" ? { ...a, minQuantitySteps: 50 } : a,
);

describe("engine under random logs", () => {
  it("conserves every asset across users, open and reserved margin and the house, and never lets a balance go negative", () => {
    fc.assert(
      fc.property(commandsArbitrary(), (commands) => {
        // A minimum quantity above one step on two markets, so partial closes meet REMAINDER_TOO_SMALL too.
        const state = createState(makeParams({ maxOpenTradesPerUser: 8, assets: WITH_MINIMUMS }));
        let responses = 0;
        let instructions = 0;
        for (const entry of toLog(commands)) {
          if (entry.message.type === "user_instruction") instructions++;
          const outputs = apply(state, entry);
          responses += outputs.filter((o) => o.type === "order_response").length;
          checkInvariants(state); // throws on any broken conservation, sign or index invariant
        }
        // Exactly one answer per instruction, whether it acted, was refused or was a duplicate.
        expect(responses).toBe(instructions);
      }),
      { numRuns: 300 },
    );
  });

  it("numbers each user's private outputs 1, 2, 3, … in output order, and nothing else", () => {
    fc.assert(
      fc.property(commandsArbitrary(), fc.constantFrom(8, 1), (commands, maxOpenTradesPerUser) => {
        const state = createState(makeParams({ maxOpenTradesPerUser, assets: WITH_MINIMUMS }));
        const last = new Map<string, number>();
        for (const entry of toLog(commands)) {
          for (const o of apply(state, entry)) {
            expect(isPrivateOutput(o)).toBe("seq" in o);
            if (!isPrivateOutput(o)) continue;
            const expected = (last.get(o.userId) ?? 0) + 1;
            expect(o.seq, `${o.type} ${o.id} of ${o.userId}`).toBe(expected);
            last.set(o.userId, expected);
          }
        }
        // The counter each account keeps is the last number it gave (0 for an account with no output).
        for (const a of state.accounts.values()) expect(a.eventSeq).toBe(last.get(a.userId) ?? 0);
        expect([...last.keys()].every((u) => state.accounts.has(u))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it("remembers each answer as a receipt that rebuilds exactly the answer first sent", () => {
    fc.assert(
      fc.property(
        commandsArbitrary(),
        fc.constantFrom(makeParams(), makeParams({ idempotencyMaxPerUser: 3, idempotencyMaxEntries: 7 })),
        (commands, params) => {
          const state = createState(params);
          // The answer each (user, request id) got when it acted: what its duplicates must get, whatever happened since.
          const firstAnswers = new Map<string, Answer>();
          for (const entry of toLog(commands)) {
            const m = entry.message;
            const before = m.type === "user_instruction" ? state.idempotency.get(m.userId, m.requestId) : undefined;
            const withinWindow =
              before !== undefined && before.atMs >= parseInputId(entry.id).ms - params.idempotencyWindowMs;
            const expected = withinWindow ? answerOf(state, before.receipt) : undefined;
            const outputs = apply(state, entry);
            if (m.type !== "user_instruction") continue;
            const response = outputs.at(-1);
            expect(response?.type).toBe("order_response");
            if (response?.type !== "order_response") continue;
            // A request id still remembered when it comes again gets the very answer it got the first time...
            const key = `${m.userId} ${m.requestId}`;
            if (expected !== undefined) {
              expect(response.answer).toEqual(expected);
              expect(response.answer).toEqual(firstAnswers.get(key));
            } else {
              firstAnswers.set(key, response.answer);
            }
            // ...and what is remembered now rebuilds exactly the answer just sent.
            const remembered = state.idempotency.get(m.userId, m.requestId);
            if (remembered !== undefined) expect(answerOf(state, remembered.receipt)).toEqual(response.answer);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("actually exercises trading: random logs open, trigger and close trades", () => {
    // Guards the generator: if it stopped producing valid trades, the properties above would pass vacuously.
    const seen = new Set<string>();
    fc.assert(
      fc.property(commandsArbitrary(), (commands) => {
        // Also with a low open-trade limit, so that some pending orders are rejected at fill.
        for (const maxOpenTradesPerUser of [500, 1]) {
          const state = createState(makeParams({ assets: WITH_MINIMUMS, maxOpenTradesPerUser }));
          for (const entry of toLog(commands)) {
            for (const o of apply(state, entry)) {
              if (o.type === "trade_opened") seen.add("opened");
              if (o.type === "closed_order") seen.add(o.trade.closeReason);
              if (o.type === "order_response" && o.answer.ok && o.answer.result.kind !== "create_account")
                seen.add(o.answer.result.kind);
              if (o.type === "trade_updated") seen.add(o.change);
              if (o.type === "order_response" && !o.answer.ok && o.answer.error.code === "REMAINDER_TOO_SMALL")
                seen.add("remainder refused");
              if (o.type === "order_updated") seen.add(`order ${o.order.status}`);
            }
          }
        }
      }),
      { numRuns: 1000, seed: 42 },
    );
    expect([...seen].sort()).toEqual([
      "cancel_order",
      "close_trade",
      "exits",
      "liquidation",
      "manual",
      "modify_trade",
      "open_trade",
      "opened",
      "order cancelled",
      "order expired",
      "order filled",
      "order pending",
      "order rejected",
      "partial_close",
      "place_oco",
      "place_order",
      "remainder refused",
      "spot_order",
      "stop_loss",
      "take_profit",
      "trailing_activated",
      "trailing_stop",
    ]);
  });
});
