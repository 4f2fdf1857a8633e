import { describe, expect, it } from "vitest";
import {
  isPrivateOutput,
  type Answer,
  type EngineInput,
  type EngineOutput,
  type Instruction,
  type OutputOf,
} from "../../contract/messages.ts";
import { apply } from "../core/apply.ts";
import { checkInvariants } from "../core/invariants.ts";
import { DEFAULT_PARAMS, makeParams, type EngineParams } from "../core/params.ts";
import { answerOf, remembered } from "../core/receipts.ts";
import { tradeView } from "../core/views.ts";
import { createState, tradeId, tradeSeq, type EngineState, type Trade } from "../core/state.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { entry } from "../testing/spec-support.ts";
import { ByteWriter } from "./bytes.ts";
import { SNAPSHOT_VERSION, decodeSnapshot, encodeSnapshot, prescanIdempotency } from "./codec.ts";
import { hashSnapshot, stateHash } from "./hash.ts";

const USD = 1_000_000; // micros
const ETH = 0;
const BTC = 1;
const SOL = 2;
const ADA = 3;

/**
 * A state with a bit of everything, built through the engine (shard 3, so ids read "T3-…"):
 *   carol, alice, bob, dave created in that (unsorted) order; quotes for ETH and SOL only; three ignored updates;
 *   T3-1 alice long ETH 100×10, SL 4200, TP 4500        T3-2 alice short SOL 50×5, no SL/TP
 *   T3-3 bob long ETH 200×1 (no liquidation level)       T3-4 bob short ETH 20×20, SL 4350, TP 4100
 *   O3-5 carol spot buy 0.5 SOL                          T3-6 carol long SOL 30×3, SL 190
 *   T3-7 alice long SOL 10×2, opened and closed at once (a gap in the sequence)
 *   idempotency: every answer above, plus a remembered INVALID_LEVERAGE refusal ("a-bad"), but not the transient
 *   NO_PRICE refusal on BTC ("a-btc").
 */
function richHarness(): EngineHarness {
  return richSetup().h;
}

function richSetup() {
  const h = new EngineHarness({ shard: 3 });
  /** Every answer sent, by idempotency key (`<userId> <requestId>`). */
  const answers = new Map<string, Answer>();
  const ask = (userId: string, instruction: Instruction, requestId?: string) => {
    const r = requestId === undefined ? h.instruct(userId, instruction) : h.instruct(userId, instruction, requestId);
    answers.set(`${userId} ${r.response.requestId}`, r.answer);
    return r.answer;
  };
  const ok = (answer: Answer) => expect(answer).toMatchObject({ ok: true });

  for (const u of ["carol", "alice", "bob", "dave"]) ok(ask(u, { kind: "create_account" }));
  h.price("ETH_USDC_PERP", "4300.00", "4300.10");
  h.price("SOL_USDC_PERP", "200.00", "200.02");
  h.price("DOGE_USDC_PERP", "1", "2"); // unknown market
  h.price("ETH_USDC_PERP", "4301.00", "4300.00"); // crossed
  h.price("SOL_USDC_PERP", "0", "1"); // zero bid
  h.advance(100);
  const firstOpen = ask(
    "alice",
    {
      kind: "open_trade",
      asset: "ETH",
      side: "long",
      margin: "100",
      leverage: 10,
      stopLoss: "4200",
      takeProfit: "4500",
    },
    "a-open-1",
  );
  ok(firstOpen);
  ok(ask("alice", { kind: "open_trade", asset: "SOL", side: "short", margin: "50", leverage: 5 }));
  ok(ask("bob", { kind: "open_trade", asset: "ETH", side: "long", margin: "200", leverage: 1 }));
  h.advance(250);
  ok(
    ask("bob", {
      kind: "open_trade",
      asset: "ETH",
      side: "short",
      margin: "20",
      leverage: 20,
      stopLoss: "4350",
      takeProfit: "4100",
    }),
  );
  ok(ask("carol", { kind: "spot_order", asset: "SOL", side: "buy", quantity: "0.5" }));
  ok(ask("carol", { kind: "open_trade", asset: "SOL", side: "long", margin: "30", leverage: 3, stopLoss: "190" }));
  ok(ask("alice", { kind: "open_trade", asset: "SOL", side: "long", margin: "10", leverage: 2 }));
  ok(ask("alice", { kind: "close_trade", tradeId: "T3-7" }));
  const firstBad = ask(
    "alice",
    { kind: "open_trade", asset: "ETH", side: "long", margin: "1", leverage: 1000 },
    "a-bad",
  );
  expect(firstBad).toMatchObject({ ok: false, error: { code: "INVALID_LEVERAGE" } });
  expect(
    ask("alice", { kind: "open_trade", asset: "BTC", side: "long", margin: "1", leverage: 2 }, "a-btc"),
  ).toMatchObject({ ok: false, error: { code: "NO_PRICE" } });
  return { h, firstOpen, firstBad, answers };
}

function expectOk(r: { answer: { ok: boolean } }): void {
  expect(r.answer).toMatchObject({ ok: true });
}

function trade(state: EngineState, userId: string, id: string): Trade {
  const t = state.accounts.get(userId)?.openTrades.get(tradeSeq(state.params.shard, id));
  if (t === undefined) throw new Error(`no open trade ${id} for ${userId}`);
  return t;
}

/** The stored and derived fields of a trade (and its id, as shown), without its account reference and heap positions. */
function tradeFields(shard: number, t: Trade) {
  return {
    seq: t.seq,
    id: tradeId(shard, t.seq),
    userId: t.account.userId,
    assetIndex: t.assetIndex,
    isLong: t.isLong,
    marginMicros: t.marginMicros,
    leverage: t.leverage,
    quantitySteps: t.quantitySteps,
    openPriceTicks: t.openPriceTicks,
    stopLossTicks: t.stopLossTicks,
    takeProfitTicks: t.takeProfitTicks,
    liquidationTicks: t.liquidationTicks,
    exitTicks: t.exitTicks,
    openedAtMs: t.openedAtMs,
  };
}

function allTrades(state: EngineState) {
  return [...state.accounts.values()]
    .flatMap((a) => [...a.openTrades.values()].map((t) => tradeFields(state.params.shard, t)))
    .sort((x, y) => x.seq - y.seq);
}

function allTradeObjects(state: EngineState): Trade[] {
  return [...state.accounts.values()].flatMap((a) => [...a.openTrades.values()]).sort((x, y) => x.seq - y.seq);
}

function closedOrders(outputs: readonly EngineOutput[]) {
  return outputs.filter((o): o is OutputOf<"closed_order"> => o.type === "closed_order").map((o) => o.trade);
}

describe("snapshot codec: round trip", () => {
  it("encode → decode → encode gives identical bytes", () => {
    const h = richHarness();
    const bytes = encodeSnapshot(h.state);
    const restored = decodeSnapshot(bytes);
    expect(encodeSnapshot(restored)).toEqual(bytes);
    // …and the original is unchanged by being encoded.
    expect(encodeSnapshot(h.state)).toEqual(bytes);
  });

  it("restores the cursor, counters, balances, holdings and quotes", () => {
    const h = richHarness();
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    checkInvariants(restored);

    // Seven instructions at t0 + 350 ms: ids …350-0 to …350-6.
    expect(h.log.at(-1)!.id).toBe("1700000000350-6");
    expect(restored.lastInputId).toBe("1700000000350-6");
    expect(restored.lastInputMs).toBe(1_700_000_000_350);
    expect(restored.lastInputSeq).toBe(6);
    expect(restored.nextSeq).toBe(8); // T3-1 … T3-7 and O3-5 used 1 … 7
    expect(restored.ignoredPriceUpdates).toBe(3);
    expect(restored.params).toEqual(h.state.params);
    expect(restored.params.shard).toBe(3);

    const usd = (u: string) => restored.accounts.get(u)?.usd;
    // alice: 10000 − 100 − 50 margins; T3-7 (0.09 SOL bought at 200.02, sold at 200.00) lost 2 ticks × 9 × 100 micros.
    expect(usd("alice")).toBe(10_000 * USD - 150 * USD - 1_800);
    expect(usd("bob")).toBe(10_000 * USD - 220 * USD);
    // carol: 0.5 SOL at 200.02 = 100.01 USD, plus 30 margin.
    expect(usd("carol")).toBe(10_000 * USD - 100_010_000 - 30 * USD);
    expect(usd("dave")).toBe(10_000 * USD);
    expect(restored.accounts.get("carol")?.holdings).toEqual([0, 0, 50, 0]);
    expect(restored.accounts.get("alice")?.holdings).toEqual([0, 0, 0, 0]);
    expect(restored.house.holdings).toEqual([0n, 0n, -50n, 0n]);
    expect(restored.house.usd).toBe(h.state.house.usd);
    expect([...restored.accounts.keys()].sort()).toEqual(["alice", "bob", "carol", "dave"]);
    // Private outputs so far: one per create and spot order (balances), two per open and per close (trade, balances).
    const eventSeq = (u: string) => restored.accounts.get(u)?.eventSeq;
    expect(["alice", "bob", "carol", "dave"].map(eventSeq)).toEqual([1 + 3 * 2 + 2, 1 + 2 * 2, 1 + 1 + 2, 1]);

    expect(restored.quotes[ETH]).toEqual({
      bidTicks: 430_000,
      askTicks: 430_010,
      atMs: 1_700_000_000_000,
      exchangeTimeUs: "1700000000000000",
      source: "sim",
    });
    expect(restored.quotes[SOL]).toMatchObject({ bidTicks: 20_000, askTicks: 20_002 });
    expect(restored.quotes[BTC]).toBeUndefined();
    expect(restored.quotes[ADA]).toBeUndefined();
    expect(restored.quotes).toEqual(h.state.quotes);
  });

  it("rebuilds trades with their ids, owners, exit levels and trigger-heap membership", () => {
    const h = richHarness();
    const restored = decodeSnapshot(encodeSnapshot(h.state));

    expect(allTrades(restored)).toEqual(allTrades(h.state));
    expect(allTrades(restored).map((t) => t.id)).toEqual(["T3-1", "T3-2", "T3-3", "T3-4", "T3-6"]);
    for (const account of restored.accounts.values()) {
      for (const [seq, t] of account.openTrades) {
        expect(t.seq).toBe(seq);
        expect(t.account).toBe(account);
      }
    }

    // Quantities and levels worked out by hand from the prices above (maintenance margin 0.5%).
    const a1 = trade(restored, "alice", "T3-1");
    expect(a1).toMatchObject({
      assetIndex: ETH,
      isLong: true,
      marginMicros: 100 * USD,
      leverage: 10,
      openPriceTicks: 430_010,
      quantitySteps: 2_325,
    });
    expect(a1).toMatchObject({
      stopLossTicks: 420_000,
      takeProfitTicks: 450_000,
      liquidationTicks: 388_943,
      exitTicks: 420_000,
    });
    expect(a1.exitPos).toBeGreaterThanOrEqual(0);
    expect(a1.profitPos).toBeGreaterThanOrEqual(0);

    const a2 = trade(restored, "alice", "T3-2");
    expect(a2).toMatchObject({
      assetIndex: SOL,
      isLong: false,
      openPriceTicks: 20_000,
      quantitySteps: 125,
      stopLossTicks: 0,
      takeProfitTicks: 0,
    });
    expect(a2).toMatchObject({ liquidationTicks: 23_881, exitTicks: 23_881, profitPos: -1 });
    expect(a2.exitPos).toBeGreaterThanOrEqual(0);

    // A 1× long can never reach maintenance margin: no exit level, in no heap.
    const b3 = trade(restored, "bob", "T3-3");
    expect(b3).toMatchObject({
      isLong: true,
      quantitySteps: 465,
      liquidationTicks: 0,
      exitTicks: 0,
      exitPos: -1,
      profitPos: -1,
    });

    // Short: the stop-loss (4350) comes before the liquidation level (4492.60), so it is the exit.
    const b4 = trade(restored, "bob", "T3-4");
    expect(b4).toMatchObject({
      isLong: false,
      quantitySteps: 930,
      stopLossTicks: 435_000,
      takeProfitTicks: 410_000,
      liquidationTicks: 449_260,
      exitTicks: 435_000,
    });
    expect(b4.openedAtMs).toBe(1_700_000_000_350);
    expect(a1.openedAtMs).toBe(1_700_000_000_100);

    const c6 = trade(restored, "carol", "T3-6");
    expect(c6).toMatchObject({
      quantitySteps: 44,
      stopLossTicks: 19_000,
      liquidationTicks: 13_250,
      exitTicks: 19_000,
      profitPos: -1,
    });

    const book = restored.books[ETH]!;
    expect([book.longExit.size, book.longProfit.size, book.shortExit.size, book.shortProfit.size]).toEqual([
      1, 1, 1, 1,
    ]);
    expect(book.longExit.peek()).toBe(a1);
    expect(book.shortExit.peek()).toBe(b4);
    const solBook = restored.books[SOL]!;
    expect([solBook.longExit.size, solBook.longProfit.size, solBook.shortExit.size, solBook.shortProfit.size]).toEqual([
      1, 0, 1, 0,
    ]);
  });

  it("restores idempotency entries in log order, without the transient refusal", () => {
    const { h, answers } = richSetup();
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    const keys = [...restored.idempotency.keys()];
    expect(keys).toEqual([...h.state.idempotency.keys()]);
    expect(keys.slice(0, 4)).toEqual(["carol r1", "alice r2", "bob r3", "dave r4"]);
    expect(keys).toContain("alice a-open-1");
    expect(keys.at(-1)).toBe("alice a-bad");
    expect(keys).not.toContain("alice a-btc");
    expect(keys).toHaveLength(answers.size - 1);
    expect(restored.idempotency.get("alice", "a-bad")?.receipt).toMatchObject({
      kind: "rejected",
      code: "INVALID_LEVERAGE",
    });
    expect(restored.idempotency.get("alice", "a-open-1")?.receipt).toMatchObject({
      kind: "open_trade",
      trade: { seq: 1, openPriceTicks: 430_010, stopLossTicks: 420_000 },
      balances: [9_900 * USD, 0, 0, 0, 0],
    });
    expect(restored.idempotency.get("alice", "a-open-1")?.atMs).toBe(1_700_000_000_100);
    expect(restored.idempotency.get("carol", "r1")?.atMs).toBe(1_700_000_000_000);
    // Every kind of receipt (create, open, close, spot, refusal) still rebuilds the exact answer first sent.
    const kinds = new Set<string>();
    for (const [key, entry] of restored.idempotency) {
      kinds.add(entry.receipt.kind);
      expect(answerOf(restored, entry.receipt), key).toEqual(answers.get(key));
    }
    expect([...kinds].sort()).toEqual(["close_trade", "create_account", "open_trade", "rejected", "spot_order"]);
  });

  it("leaves restored receipts packed: decoded when asked, copied into the next snapshot, released when all are gone", () => {
    const { h } = richSetup();
    const bytes = encodeSnapshot(h.state);
    const restored = decodeSnapshot(bytes);
    expect(restored.idempotency.packedBytes).toBe(bytes);
    expect(encodeSnapshot(restored)).toEqual(bytes);
    // Decoding one (a repeated request) changes nothing in the next snapshot.
    expect(restored.idempotency.get("alice", "a-open-1")?.receipt).toMatchObject({
      kind: "open_trade",
      trade: { seq: 1 },
    });
    expect(encodeSnapshot(restored)).toEqual(bytes);
    expect(restored.idempotency.packedBytes).toBe(bytes);
    // A day later every remembered request has expired: the next one evicts them all, and the bytes go with them.
    const later = `${restored.lastInputMs + restored.params.idempotencyWindowMs + 1}-0`;
    apply(restored, {
      id: later,
      message: { type: "user_instruction", requestId: "late", userId: "zed", instruction: { kind: "create_account" } },
    });
    expect(restored.idempotency.keys()).toEqual(["zed late"]);
    expect(restored.idempotency.packedBytes).toBeUndefined();
  });

  it("keeps behaving exactly like the original: a stop-loss, a liquidation, a manual close, duplicate requests", () => {
    const { h, firstOpen, firstBad } = richSetup();
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    const mark = h.log.length;
    const original: EngineOutput[][] = [];
    const run = (outputs: EngineOutput[]) => original.push(outputs);

    h.advance(1_000);
    run(h.price("ETH_USDC_PERP", "4199.00", "4199.10"));
    run(h.instruct("bob", { kind: "close_trade", tradeId: "T3-4" }).outputs);
    run(h.price("SOL_USDC_PERP", "240.00", "240.10"));
    run(
      h.instruct(
        "alice",
        {
          kind: "open_trade",
          asset: "ETH",
          side: "long",
          margin: "100",
          leverage: 10,
          stopLoss: "4200",
          takeProfit: "4500",
        },
        "a-open-1",
      ).outputs,
    );
    run(
      h.instruct("alice", { kind: "open_trade", asset: "ETH", side: "long", margin: "1", leverage: 1000 }, "a-bad")
        .outputs,
    );
    run(
      h.instruct("alice", { kind: "open_trade", asset: "BTC", side: "long", margin: "1", leverage: 2 }, "a-btc")
        .outputs,
    );
    run(h.instruct("dave", { kind: "open_trade", asset: "ETH", side: "short", margin: "10", leverage: 2 }).outputs);

    const replayed = h.log.slice(mark).map((e) => {
      const out = apply(restored, e);
      checkInvariants(restored);
      return out;
    });
    expect(replayed).toEqual(original);
    expect(stateHash(restored)).toBe(stateHash(h.state));

    // What happened, worked out independently:
    // 1. bid 4199.00 ≤ SL 4200: T3-1 stops out at the bid, (419900 − 430010) × 2325 micros.
    expect(closedOrders(replayed[0]!)).toEqual([
      expect.objectContaining({ id: "T3-1", closeReason: "stop_loss", closePrice: "4199", pnl: "-23.50575" }),
    ]);
    // 2. bob closes his short at the ask: (430000 − 419910) × 930 micros.
    expect(closedOrders(replayed[1]!)).toEqual([
      expect.objectContaining({ id: "T3-4", closeReason: "manual", closePrice: "4199.1", pnl: "9.3837" }),
    ]);
    // 3. ask 240.10 ≥ 238.81: alice's short is liquidated; the loss stops at its margin.
    expect(closedOrders(replayed[2]!)).toEqual([
      expect.objectContaining({ id: "T3-2", closeReason: "liquidation", pnl: "-50" }),
    ]);
    // 4–5. Duplicates get the first answers again and act no more.
    const response = (outputs: EngineOutput[]) =>
      outputs.find((o): o is OutputOf<"order_response"> => o.type === "order_response")!;
    expect(replayed[3]).toHaveLength(1);
    expect(response(replayed[3]!).answer).toEqual(firstOpen);
    expect(response(replayed[3]!).answer).toMatchObject({
      ok: true,
      result: { trade: { id: "T3-1", stopLoss: "4200" }, balances: { USD: "9900" } },
    });
    expect(replayed[4]).toHaveLength(1);
    expect(response(replayed[4]!).answer).toEqual(firstBad);
    expect(restored.accounts.get("alice")?.openTrades.size).toBe(0);
    // 6. Still no BTC quote after the restore.
    expect(response(replayed[5]!).answer).toMatchObject({ ok: false, error: { code: "NO_PRICE" } });
    // 7. The sequence continues where it left off.
    expect(response(replayed[6]!).answer).toMatchObject({ ok: true, result: { trade: { id: "T3-8" } } });
  });

  it("rebuilds the trigger heaps so triggers fire in the same order as before", () => {
    // Stop-loss levels scrambled against the (sorted) account order the snapshot stores trades in.
    const h = new EngineHarness();
    h.price("ETH_USDC_PERP", "4300.00", "4300.10");
    const levels: [string, string, string][] = [
      ["a", "4100", "4500"],
      ["b", "4290", "4320"],
      ["c", "4150", "4450"],
      ["d", "4280", "4350"],
      ["e", "4200", "4400"],
      ["f", "4250", "4330"],
    ];
    for (const [u, longStop, shortStop] of levels) {
      h.createAccount(u);
      expectOk(
        h.instruct(u, {
          kind: "open_trade",
          asset: "ETH",
          side: "long",
          margin: "10",
          leverage: 2,
          stopLoss: longStop,
        }),
      );
      expectOk(
        h.instruct(u, {
          kind: "open_trade",
          asset: "ETH",
          side: "short",
          margin: "10",
          leverage: 2,
          stopLoss: shortStop,
        }),
      );
    }
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    checkInvariants(restored); // heap order and positions
    // Each trade is back where it was in its heaps: the layout, not just the order, is the original's.
    const positions = (s: EngineState) => allTradeObjects(s).map((t) => [t.seq, t.exitPos, t.profitPos]);
    expect(positions(restored)).toEqual(positions(h.state));
    expect(new Set(positions(h.state).map(([, exitPos]) => exitPos))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    const mark = h.log.length;
    const down = h.price("ETH_USDC_PERP", "4000.00", "4000.10");
    const up = h.price("ETH_USDC_PERP", "4600.00", "4600.10");
    const [downAgain, upAgain] = h.log.slice(mark).map((e) => apply(restored, e));
    expect(downAgain).toEqual(down);
    expect(upAgain).toEqual(up);
    // Long stops fire highest level first: b 4290, d 4280, f 4250, e 4200, c 4150, a 4100 (a = T0-1/2, b = T0-3/4, …).
    expect(closedOrders(downAgain!).map((t) => t.id)).toEqual(["T0-3", "T0-7", "T0-11", "T0-9", "T0-5", "T0-1"]);
    // Short stops lowest first: b 4320, f 4330, d 4350, e 4400, c 4450, a 4500.
    expect(closedOrders(upAgain!).map((t) => t.id)).toEqual(["T0-4", "T0-12", "T0-8", "T0-10", "T0-6", "T0-2"]);
    expect(stateHash(restored)).toBe(stateHash(h.state));
  });

  it("round-trips a fresh state", () => {
    const fresh = createState(makeParams());
    const restored = decodeSnapshot(encodeSnapshot(fresh));
    expect(restored.lastInputId).toBe("0-0");
    expect(restored.nextSeq).toBe(1);
    expect(restored.accounts.size).toBe(0);
    expect(restored.quotes).toEqual([undefined, undefined, undefined, undefined]);
    expect(encodeSnapshot(restored)).toEqual(encodeSnapshot(fresh));
  });
});

describe("snapshot codec: hash", () => {
  it("is the SHA-256 of the snapshot bytes and equal for equal states", () => {
    const a = richHarness();
    const b = richHarness();
    const hash = stateHash(a.state);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).toBe(hashSnapshot(encodeSnapshot(a.state)));
    expect(stateHash(b.state)).toBe(hash);
    expect(stateHash(decodeSnapshot(encodeSnapshot(a.state)))).toBe(hash);
  });

  it("changes when one balance changes by one micro, and comes back when it is undone", () => {
    const h = richHarness();
    const hash = stateHash(h.state);
    const bob = h.state.accounts.get("bob")!;
    bob.usd += 1;
    expect(stateHash(h.state)).not.toBe(hash);
    bob.usd -= 1;
    expect(stateHash(h.state)).toBe(hash);
    h.state.house.usd -= 1n;
    expect(stateHash(h.state)).not.toBe(hash);
    h.state.house.usd += 1n;
    h.state.accounts.get("carol")!.holdings[SOL]! += 1;
    expect(stateHash(h.state)).not.toBe(hash);
  });

  it("differs after any further applied input, even an ignored one", () => {
    const h = richHarness();
    const hash = stateHash(h.state);
    h.price("NOPE_USDC_PERP", "1", "2");
    expect(stateHash(h.state)).not.toBe(hash);
  });

  it("does not depend on the order in which accounts were created", () => {
    // Same content is reachable by different orders once the creation requests have left the idempotency window.
    const build = (order: string[]) => {
      const h = new EngineHarness({ idempotencyWindowMs: 1_000 });
      for (const u of order) h.createAccount(u);
      h.advance(5_000);
      h.createAccount("zoe"); // remembered at the new time; evicts the older entries
      return h.state;
    };
    const a = build(["alice", "bob", "mallory"]);
    const b = build(["mallory", "bob", "alice"]);
    expect([...a.accounts.keys()]).not.toEqual([...b.accounts.keys()]);
    expect([...a.idempotency.keys()]).toEqual(["zoe r4"]);
    expect([...b.idempotency.keys()]).toEqual(["zoe r4"]);
    expect(encodeSnapshot(a)).toEqual(encodeSnapshot(b));
    expect(stateHash(a)).toBe(stateHash(b));
  });
});

describe("snapshot codec: refusals", () => {
  const good = () => encodeSnapshot(richHarness().state);

  it("refuses a foreign file (wrong magic)", () => {
    for (const i of [0, 1, 2, 3]) {
      const bytes = good();
      bytes[i] = bytes[i]! ^ 0x20;
      expect(() => decodeSnapshot(bytes)).toThrow("not an engine snapshot");
    }
    expect(() => decodeSnapshot(new TextEncoder().encode('{"json":true}'))).toThrow("not an engine snapshot");
  });

  it("starts with PBSN and the version", () => {
    const bytes = good();
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe("PBSN");
    expect(bytes[4]).toBe(SNAPSHOT_VERSION);
  });

  it("refuses an unsupported version", () => {
    for (const v of [0, SNAPSHOT_VERSION + 1, 200]) {
      const w = new ByteWriter(16);
      w.uint(v);
      const versionBytes = w.finish();
      const bytes = good();
      const patched = new Uint8Array([...bytes.subarray(0, 4), ...versionBytes, ...bytes.subarray(5)]);
      expect(() => decodeSnapshot(patched)).toThrow(
        `snapshot version ${v} is not supported (expected ${SNAPSHOT_VERSION})`,
      );
    }
  });

  it("refuses truncated bytes wherever they are cut", () => {
    const bytes = good();
    expect(bytes.length).toBeGreaterThan(1_000);
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(() => decodeSnapshot(bytes.subarray(0, cut)), `cut at ${cut}`).toThrow("snapshot truncated");
    }
  });

  it("refuses trailing bytes", () => {
    const bytes = good();
    expect(() => decodeSnapshot(new Uint8Array([...bytes, 0]))).toThrow("snapshot has trailing bytes");
    expect(() => decodeSnapshot(new Uint8Array([...bytes, ...bytes]))).toThrow("snapshot has trailing bytes");
  });

  it.each<[string, Partial<EngineParams>, string]>([
    [
      "a zero max leverage",
      { maxLeverage: 0 },
      "engine parameter maxLeverage must be a whole number from 1 to 1000, got 0",
    ],
    ["a fractional shard", { shard: 1.5 }, "engine parameter shard"],
    ["no assets", { assets: [] }, "at least one asset must be configured"],
    [
      "a duplicate asset",
      { assets: [DEFAULT_PARAMS.assets[0]!, DEFAULT_PARAMS.assets[0]!] },
      "duplicate asset or market",
    ],
    [
      "an asset whose minimum quantity is below one step",
      { assets: [{ ...DEFAULT_PARAMS.assets[0]!, minQuantitySteps: 0 }] },
      "ETH: minQuantitySteps must be a whole number ≥ 1, got 0",
    ],
    [
      "a max-leverage trade that would open liquidated",
      { maintenanceMarginPpm: 10_000, maxLeverage: 100 },
      "must stay below 100%",
    ],
  ])("refuses params with %s", (_name, override, message) => {
    // createState does not validate, so an invalid snapshot can be written; decode must refuse it.
    const bytes = encodeSnapshot(createState({ ...DEFAULT_PARAMS, ...override }));
    expect(() => decodeSnapshot(bytes)).toThrow(message);
  });
});

interface HandBuiltOptions {
  version?: 1 | 2 | 3 | 4 | 5;
  /** Version 5: zed's eventSeq (the seq of his last private output). */
  eventSeq?: number;
  assetAndSide?: number;
  receiptKind?: number;
  rejectionCode?: string;
  accountIndex?: number;
  /** Added to the second receipt's length prefix. */
  lengthSkew?: number;
  /** Raw bytes for the first receipt's USD amount (instead of the varint of 10,000 USD). */
  grantBytes?: number[];
  secondRequestId?: string;
  /** The idempotency section's count (2 entries follow whatever it says). */
  idempotencyCount?: number;
  /** Version 3: the first heap sizes, instead of the right ones. */
  heapSizes?: number[];
  /** Version 3: the first trade's take-profit position, plus one (it has no take-profit: 0). */
  firstProfitPos?: number;
  /** Version 4: zed's long ETH trails 1.00 from its best bid 4300.00, his short SOL waits to trail 2.5 % from 190. */
  withTrailing?: boolean;
  /**
   * Version 4: zed's pending orders — P0-5 long limit ETH 4200 (100 USD × 10, expiring), and the OCO pair P0-8 long
   * stop ETH 4400 (50 × 5) / P0-9 short stop ETH 4100 (80 × 2, SL 4200) — reserving 100 + max(50, 80) = 180 USD.
   */
  pending?: boolean;
  /** With `pending`: the sequence number P0-9 names as its partner (8 unless said). */
  secondLegLink?: number;
  /** Params left out of the JSON (as a snapshot written before they existed). */
  dropParams?: string[];
  /** The params JSON with these values under the idempotency limits' former names. */
  formerParamNames?: { dedupWindowMs: number; dedupMaxEntries: number; dedupMaxPerUser: number };
  /** The params JSON with assets saved before they had `minQuantitySteps`. */
  assetsWithoutMinQuantity?: boolean;
}

/** A snapshot written by hand from the layout documented in codec.ts, independently of `encodeSnapshot`. */
function handBuilt(options: HandBuiltOptions = {}): Uint8Array {
  const version = options.version ?? SNAPSHOT_VERSION;
  const params = makeParams();
  const w = new ByteWriter(64);
  for (const c of "PBSN") w.u8(c.charCodeAt(0));
  w.uint(version);
  if (options.assetsWithoutMinQuantity === true) {
    const assets = params.assets.map(({ minQuantitySteps: _, ...rest }) => rest);
    w.string(JSON.stringify({ ...params, assets }));
  } else if (options.formerParamNames === undefined) {
    const stored: Record<string, unknown> = { ...params };
    for (const name of options.dropParams ?? []) delete stored[name];
    w.string(JSON.stringify(stored));
  } else {
    const stored: Record<string, unknown> = { ...params, ...options.formerParamNames };
    for (const name of ["idempotencyWindowMs", "idempotencyMaxEntries", "idempotencyMaxPerUser"]) delete stored[name];
    w.string(JSON.stringify(stored));
  }
  w.string("1700000000123-4"); // lastInputId
  w.uint(10); // nextSeq
  w.uint(2); // ignoredPriceUpdates
  // house: the other side of zed's 9000 USD + 150 USD of margin (+ 180 reserved), and of his 7 ADA steps
  w.string(String(-(options.pending === true ? 9_330 : 9_150) * USD));
  for (const h of ["0", "0", "0", "-7"]) w.string(h);
  // quotes: ETH only
  w.u8(1);
  w.uint(430_000);
  w.uint(430_010);
  w.uint(1_700_000_000_100);
  w.string("1700000000100000");
  w.u8(0); // backpack
  for (let i = 1; i < 4; i++) w.u8(0);
  // heap sizes per asset (longExit longProfit shortExit shortProfit): zed's long ETH has an exit, his short SOL both
  if (version >= 3)
    for (const size of [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]) w.uint(options.heapSizes?.shift() ?? size);
  // one account with two trades
  w.uint(1);
  w.string("zed");
  w.uint(9_000 * USD);
  for (const h of [0, 0, 0, 7]) w.uint(h);
  if (version >= 5) w.uint(options.eventSeq ?? 0);
  w.uint(2);
  // seq 3: long ETH, 100 USD × 10, SL 4000, no TP, liquidation 3889.43
  w.uint(3);
  w.uint(options.assetAndSide ?? ETH * 2 + 1);
  for (const v of [100 * USD, 10, 2_325, 430_010, 400_000, 0, 388_943]) w.uint(v);
  w.int(1_700_000_000_050);
  if (version >= 3) {
    w.uint(1); // at the top of ETH's longExit
    w.uint(options.firstProfitPos ?? 0); // no take-profit
  }
  // seq 7: short SOL, 50 USD × 5, TP 150, liquidation 238.81, opened 20 ms later
  w.uint(4);
  w.uint(SOL * 2);
  for (const v of [50 * USD, 5, 125, 20_000, 0, 15_000, 23_881]) w.uint(v);
  w.int(20);
  if (version >= 3) {
    w.uint(1); // at the top of SOL's shortExit...
    w.uint(1); // ...and of its shortProfit
  }
  if (version >= 4) {
    // pending orders: zed's, then no one else's
    if (options.pending !== true) w.uint(0);
    else {
      w.uint(3);
      for (const v of [5, ETH * 4 + 1, 420_000, 100 * USD, 10, 0, 0, 1_700_000_060_000, 1_700_000_000_010, 0])
        w.uint(v);
      for (const v of [3, ETH * 4 + 2 + 1, 440_000, 50 * USD, 5, 0, 0, 0, 1_700_000_000_020, 9]) w.uint(v);
      const link = options.secondLegLink ?? 8;
      for (const v of [1, ETH * 4 + 2, 410_000, 80 * USD, 2, 420_000, 0, 0, 1_700_000_000_020, link]) w.uint(v);
    }
  }
  // two idempotency entries, times as deltas from the previous entry
  const created = new ByteWriter(16);
  created.u8(1); // create_account
  created.u8(1); // granted
  if (options.grantBytes === undefined) created.uint(10_000 * USD);
  else created.raw(new Uint8Array(options.grantBytes));
  for (const v of [0, 0, 0, 0]) created.uint(v);
  const refused = new ByteWriter(16);
  refused.u8(options.receiptKind ?? 0); // rejected
  refused.string(options.rejectionCode ?? "INVALID_AMOUNT");
  refused.string("nope");
  w.uint(options.idempotencyCount ?? 2);
  if (version === 1) {
    w.string("zed r1");
    w.uint(1_700_000_000_000);
    w.raw(created.finish());
    w.string("zed req-2");
    w.uint(50);
    w.raw(refused.finish());
  } else {
    w.uint(0); // zed, the first account
    w.string("r1");
    w.uint(1_700_000_000_000);
    w.uint(created.length);
    w.raw(created.finish());
    w.uint(options.accountIndex ?? 0);
    w.string(options.secondRequestId ?? "req-2");
    w.uint(50);
    w.uint(refused.length + (options.lengthSkew ?? 0));
    w.raw(refused.finish());
  }
  if (version >= 4) {
    // trailing stops: count, then accountIndex seq percent+2·activated amount activation [best]
    if (options.withTrailing === true) {
      w.uint(2);
      for (const v of [0, 3, 2, 100, 0, 430_000]) w.uint(v); // distance 1.00, active, best 4300
      for (const v of [0, 7, 1, 250, 19_000]) w.uint(v); // 2.5 %, pending until the ask falls to 190
    } else {
      w.uint(0);
    }
  }
  return w.finish();
}

describe("snapshot codec: documented layout", () => {
  it("reads the idempotency limits under their former names (dedup…) as the current ones", () => {
    const formerParamNames = { dedupWindowMs: 60_000, dedupMaxEntries: 70, dedupMaxPerUser: 7 };
    const { params } = decodeSnapshot(handBuilt({ formerParamNames }));
    expect([params.idempotencyWindowMs, params.idempotencyMaxEntries, params.idempotencyMaxPerUser]).toEqual([
      60_000, 70, 7,
    ]);
    expect(Object.keys(params).filter((k) => k.startsWith("dedup"))).toEqual([]);
  });

  it("gives assets saved without a minimum quantity one step, and writes it back", () => {
    const state = decodeSnapshot(handBuilt({ assetsWithoutMinQuantity: true }));
    expect(state.params.assets.map((a) => [a.symbol, a.minQuantitySteps])).toEqual([
      ["ETH", 1],
      ["BTC", 1],
      ["SOL", 1],
      ["ADA", 1],
    ]);
    expect(encodeSnapshot(state)).toEqual(handBuilt());
  });

  it.each([1, 2, 3, 4, 5] as const)("decodes a version %i snapshot written by hand from the layout", (version) => {
    const state = decodeSnapshot(handBuilt({ version }));
    checkInvariants(state);
    expect(state.lastInputId).toBe("1700000000123-4");
    expect([state.lastInputMs, state.lastInputSeq, state.nextSeq, state.ignoredPriceUpdates]).toEqual([
      1_700_000_000_123, 4, 10, 2,
    ]);
    expect(state.house).toEqual({ usd: BigInt(-9_150 * USD), holdings: [0n, 0n, 0n, -7n] });
    expect(state.quotes).toEqual([
      {
        bidTicks: 430_000,
        askTicks: 430_010,
        atMs: 1_700_000_000_100,
        exchangeTimeUs: "1700000000100000",
        source: "backpack",
      },
      undefined,
      undefined,
      undefined,
    ]);
    const zed = state.accounts.get("zed")!;
    expect(zed.usd).toBe(9_000 * USD);
    expect(zed.holdings).toEqual([0, 0, 0, 7]);
    expect(zed.eventSeq).toBe(0);
    expect(allTrades(state)).toEqual([
      {
        seq: 3,
        id: "T0-3",
        userId: "zed",
        assetIndex: ETH,
        isLong: true,
        marginMicros: 100 * USD,
        leverage: 10,
        quantitySteps: 2_325,
        openPriceTicks: 430_010,
        stopLossTicks: 400_000,
        takeProfitTicks: 0,
        liquidationTicks: 388_943,
        exitTicks: 400_000,
        openedAtMs: 1_700_000_000_050,
      },
      {
        seq: 7,
        id: "T0-7",
        userId: "zed",
        assetIndex: SOL,
        isLong: false,
        marginMicros: 50 * USD,
        leverage: 5,
        quantitySteps: 125,
        openPriceTicks: 20_000,
        stopLossTicks: 0,
        takeProfitTicks: 15_000,
        liquidationTicks: 23_881,
        exitTicks: 23_881,
        openedAtMs: 1_700_000_000_070,
      },
    ]);
    expect(state.books[SOL]!.shortProfit.peek()?.seq).toBe(7);
    expect([...state.idempotency]).toEqual([
      [
        "zed r1",
        {
          atMs: 1_700_000_000_000,
          receipt: { kind: "create_account", granted: true, balances: [10_000 * USD, 0, 0, 0, 0] },
        },
      ],
      [
        "zed req-2",
        { atMs: 1_700_000_000_050, receipt: { kind: "rejected", code: "INVALID_AMOUNT", message: "nope" } },
      ],
    ]);
    // The encoder writes exactly these bytes back, as the current version.
    expect(encodeSnapshot(state)).toEqual(handBuilt());
  });

  it("restores each account's eventSeq (version 5), and writes it back", () => {
    for (const eventSeq of [1, 300, 2 ** 40]) {
      const bytes = handBuilt({ eventSeq });
      const state = decodeSnapshot(bytes);
      checkInvariants(state);
      expect(state.accounts.get("zed")!.eventSeq).toBe(eventSeq);
      expect(encodeSnapshot(state)).toEqual(bytes);
      // The prescan steps over it to the same idempotency section as the decode.
      expect(prescanIdempotency(bytes)!.end).toBe(bytes.length - 1); // then only the empty trailing stops section
    }
  });

  it("restores a version 4 snapshot with every eventSeq at 0, so the next private output is 1", () => {
    const state = decodeSnapshot(handBuilt({ version: 4 }));
    expect(state.accounts.get("zed")!.eventSeq).toBe(0);
    // A bid of 3999 fires zed's stop-loss at 4000 on his long ETH.
    const tick: EngineInput = {
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid: "3999",
      ask: "3999.1",
      exchangeTimeUs: "1700000000200000",
      source: "backpack",
    };
    const outputs = apply(state, { id: "1700000000200-0", message: tick });
    expect(outputs.filter(isPrivateOutput).map((o) => [o.type, o.userId, o.seq])).toEqual([
      ["closed_order", "zed", 1],
      ["balances_changed", "zed", 2],
    ]);
  });

  it("decodes version 4's trailing stops section written by hand, and writes it back", () => {
    const bytes = handBuilt({ withTrailing: true });
    const state = decodeSnapshot(bytes);
    checkInvariants(state);
    const zed = state.accounts.get("zed")!;
    expect(tradeView(state, zed.openTrades.get(3)!).trailingStop).toEqual({
      distance: "1",
      percent: null,
      activationPrice: null,
      activated: true,
      bestPrice: "4300",
      level: "4299", // 4300 − 1
    });
    expect(tradeView(state, zed.openTrades.get(7)!).trailingStop).toEqual({
      distance: null,
      percent: "2.5",
      activationPrice: "190",
      activated: false,
      bestPrice: null,
      level: null,
    });
    expect(encodeSnapshot(state)).toEqual(bytes);
  });

  it("refuses at restore a packed receipt that would fail to decode later (bad UTF-8, an out-of-range number)", () => {
    const badMessage = handBuilt();
    badMessage[badMessage.lastIndexOf("nope".charCodeAt(0))] = 0xff;
    expect(() => decodeSnapshot(badMessage)).toThrow("not valid");
    // 2^53 as an 8-byte varint, then a 9-byte one.
    expect(() => decodeSnapshot(handBuilt({ grantBytes: [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10] }))).toThrow(
      "varint out of range",
    );
    expect(() => decodeSnapshot(handBuilt({ grantBytes: [...new Array<number>(8).fill(0x80), 0x01] }))).toThrow(
      "varint too long",
    );
  });

  it("refuses at restore a remembered request id the contract would not allow (left packed, it must decode later)", () => {
    for (const id of ["", "req 2", "réq", "x".repeat(129), "tab\t"]) {
      expect(() => decodeSnapshot(handBuilt({ secondRequestId: id })), JSON.stringify(id)).toThrow(
        /token of|not printable ASCII/,
      );
    }
    const longest = decodeSnapshot(handBuilt({ secondRequestId: "~".repeat(128) }));
    expect(longest.idempotency.get("zed", "~".repeat(128))?.receipt).toEqual({
      kind: "rejected",
      code: "INVALID_AMOUNT",
      message: "nope",
    });
  });

  it("refuses a snapshot that remembers the same request twice, loudly, when that account is first used", () => {
    const state = decodeSnapshot(handBuilt({ secondRequestId: "r1" }));
    expect(() => state.idempotency.get("zed", "r1")).toThrow("the restored snapshot remembers request zed r1 twice");
  });

  it("refuses a remembered request of an account that is not there, or a receipt of the wrong length", () => {
    expect(() => decodeSnapshot(handBuilt({ accountIndex: 1 }))).toThrow(
      "snapshot remembers a request of an unknown account",
    );
    for (const lengthSkew of [-1, 1]) {
      expect(() => decodeSnapshot(handBuilt({ lengthSkew }))).toThrow("snapshot holds a receipt of the wrong length");
    }
  });

  it("refuses trigger heap positions that do not fit the heaps or the trades (version 3)", () => {
    // A position the trade's levels do not call for: zed's long ETH has no take-profit.
    expect(() => decodeSnapshot(handBuilt({ firstProfitPos: 1 }))).toThrow(
      "trade #3 is saved in trigger heaps that do not match its levels",
    );
    // ETH's longExit saved empty: position 0 is out of range; saved two long: one position stays empty.
    expect(() => decodeSnapshot(handBuilt({ heapSizes: [0] }))).toThrow(
      "exit heap position 0 is out of range or taken twice",
    );
    expect(() => decodeSnapshot(handBuilt({ heapSizes: [2] }))).toThrow(
      "snapshot leaves positions of a exit heap empty",
    );
    // A size no snapshot of this length can fill is refused before anything is sized by it.
    expect(() => decodeSnapshot(handBuilt({ heapSizes: [2 ** 40] }))).toThrow("snapshot truncated");
  });

  it("refuses two trades saved at the same heap position", () => {
    const h = new EngineHarness();
    h.createAccount("amy");
    h.price("ETH_USDC_PERP", "4000", "4000.1");
    for (let i = 0; i < 2; i++)
      h.instruct("amy", { kind: "open_trade", asset: "ETH", side: "long", margin: "100", leverage: 10 });
    const [first, second] = [...h.state.accounts.get("amy")!.openTrades.values()];
    expect([first!.exitPos, second!.exitPos].sort()).toEqual([0, 1]);
    expect(() => decodeSnapshot(encodeSnapshot(h.state))).not.toThrow();
    second!.exitPos = first!.exitPos; // the encoder writes what the trade says
    expect(() => decodeSnapshot(encodeSnapshot(h.state))).toThrow(
      `exit heap position ${first!.exitPos} is out of range or taken twice`,
    );
  });

  it("refuses a trade on an asset the params do not have", () => {
    expect(() => decodeSnapshot(handBuilt({ assetAndSide: 4 * 2 + 1 }))).toThrow("snapshot names an unknown asset");
    // Large corrupt values must not wrap around to a valid index through 32-bit arithmetic.
    expect(() => decodeSnapshot(handBuilt({ assetAndSide: 2 ** 32 + 1 }))).toThrow("snapshot names an unknown asset");
    expect(() => decodeSnapshot(handBuilt({ assetAndSide: 2 ** 31 }))).toThrow("snapshot names an unknown asset");
  });

  it.each([1, 2] as const)("refuses an unknown receipt kind or rejection code (version %i)", (version) => {
    expect(() => decodeSnapshot(handBuilt({ version, receiptKind: 6 }))).toThrow(
      "snapshot holds an unknown receipt kind",
    );
    expect(() => decodeSnapshot(handBuilt({ version, receiptKind: 255 }))).toThrow(
      "snapshot holds an unknown receipt kind",
    );
    expect(() => decodeSnapshot(handBuilt({ version, rejectionCode: "NOT_A_CODE" }))).toThrow(
      "unknown rejection code NOT_A_CODE",
    );
    expect(() => decodeSnapshot(handBuilt({ version, rejectionCode: "toString" }))).toThrow(
      "unknown rejection code toString",
    );
  });
});

describe("snapshot codec: pending orders", () => {
  it("decodes a version 4 snapshot with pending orders written by hand from the layout, and writes it back", () => {
    const bytes = handBuilt({ pending: true });
    const state = decodeSnapshot(bytes);
    checkInvariants(state);
    const zed = state.accounts.get("zed")!;
    expect([...zed.pendingOrders.keys()]).toEqual([5, 8, 9]);
    const [lone, first, second] = [...zed.pendingOrders.values()];
    expect(lone).toMatchObject({
      isLong: true,
      isStop: false,
      priceTicks: 420_000,
      marginMicros: 100 * USD,
      leverage: 10,
      expiresAtMs: 1_700_000_060_000,
      placedAtMs: 1_700_000_000_010,
      oco: undefined,
    });
    expect(first!.oco).toBe(second);
    expect(second!.oco).toBe(first);
    expect(second).toMatchObject({ isLong: false, isStop: true, priceTicks: 410_000, stopLossTicks: 420_000 });
    const book = state.pendingBooks[ETH]!;
    expect([book.longLimit.peek()?.seq, book.longStop.peek()?.seq, book.shortStop.peek()?.seq]).toEqual([5, 8, 9]);
    expect(book.shortLimit.size).toBe(0);
    expect(state.expiries.peek()?.seq).toBe(5);
    expect(state.expiries.size).toBe(1);
    expect(encodeSnapshot(state)).toEqual(bytes);
    // The prescan steps over the section to the same idempotency section.
    expect(prescanIdempotency(bytes)!.start).toBe(
      prescanIdempotency(handBuilt())!.start + (bytes.length - handBuilt().length),
    );
  });

  it("refuses a one-cancels-other link to no pending order, to itself, or one-sided", () => {
    expect(() => decodeSnapshot(handBuilt({ pending: true, secondLegLink: 7 }))).toThrow(
      "snapshot links an order to no other order",
    );
    expect(() => decodeSnapshot(handBuilt({ pending: true, secondLegLink: 9 }))).toThrow(
      "snapshot links an order to no other order",
    );
    expect(() => decodeSnapshot(handBuilt({ pending: true, secondLegLink: 5 }))).toThrow(
      "snapshot holds a one-sided one-cancels-other link",
    );
  });

  it("gives a snapshot written before the pending-order params their defaults; versions 1 to 3 have no orders", () => {
    const dropParams = ["maxPendingOrdersPerUser", "maxOrderExpiryMs"];
    for (const version of [1, 2, 3, 4] as const) {
      const state = decodeSnapshot(handBuilt({ version, dropParams }));
      expect(state.params.maxPendingOrdersPerUser).toBe(200);
      expect(state.params.maxOrderExpiryMs).toBe(90 * 24 * 3600 * 1000);
      expect(state.accounts.get("zed")!.pendingOrders.size).toBe(0);
    }
  });

  it("round trips an engine's pending orders; the restored engine fills and expires them exactly as the original", () => {
    const h = new EngineHarness({ shard: 2 });
    for (const u of ["kim", "lee"]) h.createAccount(u);
    h.price("ETH_USDC_PERP", "2000", "2001");
    const send = (user: string, instruction: Instruction) => expect(h.instruct(user, instruction).answer.ok).toBe(true);
    send("kim", { kind: "place_order", ...entry("1990", { stopLoss: "1950", expiresAtMs: h.nowMs + 500 }) });
    send("kim", { kind: "place_order", ...entry("1990") });
    send("lee", {
      kind: "place_oco",
      legs: [entry("2010", { type: "stop" }), entry("1985", { side: "short", type: "stop", margin: "60" })],
    });
    send("lee", { kind: "place_order", ...entry("2050", { side: "short", expiresAtMs: h.nowMs + 900 }) });
    const bytes = encodeSnapshot(h.state);
    const restored = decodeSnapshot(bytes);
    checkInvariants(restored);
    expect(encodeSnapshot(restored)).toEqual(bytes);
    expect(stateHash(restored)).toBe(stateHash(h.state));

    const rest: { id: string; message: EngineInput }[] = [];
    const at = (ms: number, message: EngineInput) => rest.push({ id: `${h.nowMs + ms}-0`, message });
    const quote = (bid: string, ask: string): EngineInput => ({
      type: "price_update",
      market: "ETH_USDC_PERP",
      bid,
      ask,
      exchangeTimeUs: `${h.nowMs}000`, // as the quote before: one over staleQuoteMs older would be ignored
      source: "sim",
    });
    at(100, quote("1989", "1990")); // kim's two long limits fill (the older first)
    at(600, quote("1980", "2020")); // lee's pair: both legs; the first listed (long stop) fills
    at(1_000, quote("2000", "2001")); // lee's short limit expired at +900 first
    const fromOriginal = rest.map((e) => apply(h.state, e));
    const fromRestored = rest.map((e) => apply(restored, e));
    expect(fromRestored).toEqual(fromOriginal);
    expect(
      fromOriginal
        .flat()
        .filter((o) => o.type === "order_updated")
        .map((o) => o.order.id + " " + o.order.status),
    ).toEqual(["P2-1 filled", "P2-2 filled", "P2-3 filled", "P2-4 cancelled", "P2-5 expired"]);
    expect(stateHash(restored)).toBe(stateHash(h.state));
    checkInvariants(restored);
  });
});

describe("snapshot codec: answers remembered whole", () => {
  const answer: Answer = { ok: false, error: { code: "ORDER_NOT_FOUND", message: "No such order «O3-9»." } };

  it("restores an answer receipt that a repeated request then gets back", () => {
    const h = richHarness();
    const [userId] = [...h.state.accounts.keys()];
    h.state.idempotency.add(userId!, "whole-1", h.state.lastInputMs, remembered(answer).receipt);
    const bytes = encodeSnapshot(h.state);
    const restored = decodeSnapshot(bytes);
    expect(stateHash(restored)).toBe(stateHash(h.state));
    const entry = [...restored.idempotency].find(([key]) => key === `${userId} whole-1`);
    expect(entry?.[1].receipt).toEqual({ kind: "answer", answer });
    expect(encodeSnapshot(restored)).toEqual(bytes);
  });

  it("refuses at restore an answer that is not JSON; one the contract does not allow, when it is used", () => {
    const h = richHarness();
    const [userId] = [...h.state.accounts.keys()];
    h.state.idempotency.add(userId!, "whole-1", h.state.lastInputMs, remembered(answer).receipt);
    const bytes = encodeSnapshot(h.state).slice();
    const at = Buffer.from(bytes).indexOf('{"ok":false');
    const notJson = bytes.slice();
    notJson[at] = "x".charCodeAt(0);
    expect(() => decodeSnapshot(notJson)).toThrow("snapshot holds an answer that is not JSON");
    const notAllowed = bytes.slice();
    notAllowed.set(Buffer.from('{"ok":    1'), at); // same length; `ok` must be a boolean
    const restored = decodeSnapshot(notAllowed);
    expect(() => [...restored.idempotency]).toThrow("snapshot holds an answer the contract does not allow");
  });
});

describe("snapshot codec: the idempotency section scanned by another thread (prescanIdempotency)", () => {
  it("restores the same state from a prescan, asking for it once, and takes it instead of scanning again", () => {
    const h = richHarness();
    const bytes = encodeSnapshot(h.state);
    const scan = prescanIdempotency(bytes)!;
    expect(scan.accounts.length).toBe(h.state.idempotency.size);
    let asked = 0;
    const restored = decodeSnapshot(bytes, undefined, () => (asked++, scan));
    expect(asked).toBe(1);
    expect(stateHash(restored)).toBe(stateHash(h.state));
    expect([...restored.idempotency]).toEqual([...decodeSnapshot(bytes).idempotency]);
    expect(encodeSnapshot(restored)).toEqual(bytes);
    // No scan after all: the decode scans itself.
    expect(stateHash(decodeSnapshot(bytes, undefined, () => undefined))).toBe(stateHash(h.state));
    // What is restored is the scan's: times moved in it show up in the window.
    const moved = { ...scan, times: scan.times.map((t) => t + 1) };
    const fromMoved = decodeSnapshot(bytes, undefined, () => moved);
    expect([...fromMoved.idempotency].map(([, e]) => e.atMs)).toEqual(
      [...restored.idempotency].map(([, e]) => e.atMs + 1),
    );
  });

  it("refuses a scan that does not start where the idempotency section does", () => {
    const bytes = encodeSnapshot(richHarness().state);
    const scan = prescanIdempotency(bytes)!;
    expect(() => decodeSnapshot(bytes, undefined, () => ({ ...scan, start: scan.start + 1 }))).toThrow(
      `the idempotency scan starts at byte ${scan.start + 1}, but the section does at ${scan.start}`,
    );
  });

  it("makes no scan of a version-1 snapshot, whose decode never asks for one", () => {
    const bytes = handBuilt({ version: 1 });
    expect(prescanIdempotency(bytes)).toBeUndefined();
    const state = decodeSnapshot(bytes, undefined, () => {
      throw new Error("asked for a scan");
    });
    expect(state.idempotency.size).toBe(2);
  });

  it("refuses what the decode refuses, with the same error", () => {
    const cases: [HandBuiltOptions, string | RegExp][] = [
      [{ accountIndex: 1 }, "snapshot remembers a request of an unknown account"],
      [{ lengthSkew: 1 }, "snapshot holds a receipt of the wrong length"],
      [{ receiptKind: 6 }, "snapshot holds an unknown receipt kind"],
      [{ rejectionCode: "NOT_A_CODE" }, "unknown rejection code NOT_A_CODE"],
      [{ secondRequestId: "req 2" }, /not printable ASCII/],
      [{ grantBytes: [...new Array<number>(8).fill(0x80), 0x01] }, "varint too long"],
      [{ idempotencyCount: 3 }, "snapshot truncated"],
    ];
    for (const [options, message] of cases) {
      const bytes = handBuilt(options);
      expect(() => decodeSnapshot(bytes), JSON.stringify(options)).toThrow(message);
      expect(() => prescanIdempotency(bytes), JSON.stringify(options)).toThrow(message);
    }
    const bytes = encodeSnapshot(richHarness().state);
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(() => prescanIdempotency(bytes.subarray(0, cut)), `cut at ${cut}`).toThrow("snapshot truncated");
    }
  });

  it("refuses a idempotency count the bytes cannot hold before sizing anything by it", () => {
    // 2^40 entries would not fit in any array: the error must be the snapshot's, not the allocation's.
    for (const idempotencyCount of [2 ** 40, 100]) {
      expect(() => decodeSnapshot(handBuilt({ idempotencyCount })), String(idempotencyCount)).toThrow(
        "snapshot truncated",
      );
      expect(() => prescanIdempotency(handBuilt({ idempotencyCount })), String(idempotencyCount)).toThrow(
        "snapshot truncated",
      );
    }
  });
});

describe("snapshot codec: size", () => {
  it("stores 1,000 open trades in at most 26 bytes each", () => {
    // Idempotency off so the snapshot holds the trades, not 1,000 remembered answers.
    const h = new EngineHarness({ idempotencyMaxEntries: 0, maxOpenTradesPerUser: 1_000 });
    h.checkEveryStep = false;
    h.createAccount("whale");
    h.price("ETH_USDC_PERP", "4300.00", "4300.10");
    h.price("SOL_USDC_PERP", "200.00", "200.02");
    const before = encodeSnapshot(h.state).length;
    for (let i = 0; i < 1_000; i++) {
      h.advance(1 + (i % 7));
      const eth = i % 2 === 0;
      const long = i % 3 !== 0;
      if (i % 10 === 0 || i % 10 === 5) {
        const mid = eth ? 430_000 + (i % 50) * 10 : 20_000 + (i % 50);
        const market = eth ? "ETH_USDC_PERP" : "SOL_USDC_PERP";
        h.price(market, (mid / 100).toFixed(2), ((mid + 5) / 100).toFixed(2));
      }
      const instruction = {
        kind: "open_trade" as const,
        asset: eth ? "ETH" : "SOL",
        side: long ? ("long" as const) : ("short" as const),
        // Stop-losses only on trades up to 10×, placed inside their liquidation level (~10% away at 10×).
        margin: `${1 + (i % 9)}.${String(i % 100).padStart(2, "0")}`,
        leverage: i % 3 === 1 ? 1 + (i % 10) : 1 + (i % 50),
        ...(i % 3 === 1 ? { stopLoss: eth ? (long ? "4000" : "4600") : long ? "190" : "210" } : {}),
        ...(i % 5 === 2 ? { takeProfit: eth ? (long ? "6000" : "3000") : long ? "400" : "100" } : {}),
      };
      expectOk(h.instruct("whale", instruction));
    }
    checkInvariants(h.state);
    expect(h.state.accounts.get("whale")!.openTrades.size).toBe(1_000);
    const bytes = encodeSnapshot(h.state);
    const perTrade = (bytes.length - before) / 1_000;
    // Varint bytes per trade in this workload (a varint holds 7 bits per byte):
    //   seq delta 1 · asset·side 1 · margin 1.00–9.99 USD = 1e6–1e7 micros 3–4 · leverage ≤ 50 1 ·
    //   quantity ≤ 500 USD / price, under 16384 steps 1–2 · open price 20000–430500 ticks 3 ·
    //   stop-loss and take-profit 1 when absent, 3 when set · liquidation 1 (none) or 3 · time delta ≤ 7 ms 1 ·
    //   exit and take-profit heap positions (plus one) 1 when not in the heap, up to 1,000: 1–2
    //   ⇒ between 16 and 26 bytes. Measured: about 21.
    expect(perTrade).toBeGreaterThanOrEqual(16);
    expect(perTrade).toBeLessThanOrEqual(26);
    expect(encodeSnapshot(decodeSnapshot(bytes))).toEqual(bytes);
  });

  it("stores 1,000 open trades with their idempotency receipts in at most 68 bytes each", () => {
    const h = new EngineHarness({ maxOpenTradesPerUser: 1_000 });
    h.checkEveryStep = false;
    h.createAccount("w");
    h.price("ETH_USDC_PERP", "4300.00", "4300.10");
    const before = encodeSnapshot(h.state).length;
    for (let i = 0; i < 1_000; i++) {
      expectOk(
        h.instruct("w", {
          kind: "open_trade",
          asset: "ETH",
          side: "long",
          margin: "5",
          leverage: 10,
          stopLoss: "4000",
          takeProfit: "4600",
        }),
      );
    }
    expect(h.state.idempotency.size).toBe(1_001);
    const perTrade = (encodeSnapshot(h.state).length - before) / 1_000;
    // Trade: seq delta 1 · asset·side 1 · margin 5e6 4 · leverage 1 · quantity 1162 2 · price 430010 3 · SL 3 · TP 3 ·
    //   liquidation 3 · time 1 · heap positions (plus one) up to 1,000: 2 + 2 = 26.
    // Receipt: account index 1 · request id "r1001" ≤ 6 · time delta 1 · length 1 · kind 1 · seq ≤ 2 · the trade
    //   without its seq delta or positions 21 · balances (USD < 2^35: 5, four zero holdings: 4) 9 = 42.   ⇒ at most 68.
    expect(perTrade).toBeLessThanOrEqual(68);
  });
});

describe("snapshot codec: a reused writer", () => {
  it("writes exactly what a fresh encode writes, snapshot after snapshot, as the state grows and shrinks", () => {
    const h = new EngineHarness({ maxOpenTradesPerUser: 1_000 });
    h.createAccount("w");
    h.price("ETH_USDC_PERP", "4300.00", "4300.10");
    const writer = new ByteWriter(16);
    const ids: string[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 200; i++) {
        const r = h.instruct("w", { kind: "open_trade", asset: "ETH", side: "long", margin: "5", leverage: 10 });
        if (r.answer.ok && r.answer.result.kind === "open_trade") ids.push(r.answer.result.trade.id);
      }
      if (round % 2 === 1) for (const id of ids.splice(0, 350)) h.instruct("w", { kind: "close_trade", tradeId: id });
      const reused = Uint8Array.from(encodeSnapshot(h.state, writer));
      expect(reused).toEqual(encodeSnapshot(h.state));
      expect(stateHash(decodeSnapshot(reused))).toBe(stateHash(h.state));
    }
  });
});

describe("snapshot codec: a house beyond 2^53", () => {
  it("keeps exact house balances past the range of a double, through a snapshot", () => {
    // Each account's grant comes from the house: 10 grants of 1e9 USD put it at −1e16 micros, past −2^53.
    const h = new EngineHarness({ initialBalanceMicros: 1e15 });
    for (let i = 0; i < 10; i++) h.createAccount(`u${i}`);
    expect(h.state.house.usd).toBe(-10_000_000_000_000_000n);
    const restored = decodeSnapshot(encodeSnapshot(h.state));
    expect(restored.house.usd).toBe(-10_000_000_000_000_000n);
    checkInvariants(restored);
    expect(stateHash(restored)).toBe(stateHash(h.state));
  });
});
