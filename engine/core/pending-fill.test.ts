// Pending entry orders filling on price updates. Defaults: ETH long limit, margin 100 USD, leverage 10 (notional
// 1000 USD = 1e9 micros); ETH quotes bid 2000 / ask 2001 at the start. ETH is 1 micro per tick × step, so
// quantity = ⌊1e9 / fill price in ticks⌋ steps of 0.0001 ETH.
import { describe, expect, it, vi } from "vitest";
import { PositionedHeap } from "./positioned-heap.ts";
import { codeOf, entry, ETH, given, ofType, placed, resultOf, usdOf, opened } from "../testing/spec-support.ts";

const orderUpdates = (outputs: Parameters<typeof ofType>[0]) => ofType(outputs, "order_updated").map((o) => o.order);
const opens = (outputs: Parameters<typeof ofType>[0]) => ofType(outputs, "trade_opened").map((o) => o.trade);

describe("fill prices: the quote that triggered the order", () => {
  it("a long stop gapped through fills at the (worse) ask, sized at that price", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "2100", { type: "stop" });
    expect(h.price(ETH, "2098", "2099.99").some((o) => o.type === "trade_opened")).toBe(false);
    const outputs = h.price(ETH, "2149", "2150");
    // 1e9 / 215000 = 4651.16… → 4651 steps
    expect(opens(outputs)).toEqual([expect.objectContaining({ id: "T0-2", openPrice: "2150", quantity: "0.4651" })]);
    expect(orderUpdates(outputs)).toEqual([
      expect.objectContaining({ id: "P0-1", status: "filled", fillPrice: "2150", tradeId: "T0-2", reason: null }),
    ]);
    expect(outputs.map((o) => o.type)).toEqual(["quote_updated", "trade_opened", "order_updated", "balances_changed"]);
    expect(usdOf(h, "alice")).toBe("9900"); // the reservation became the trade's margin
  });

  it("a short stop gapped through fills at the (worse) bid", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "1900", { side: "short", type: "stop" });
    // 1e9 / 185000 = 5405.4… → 5405
    expect(opens(h.price(ETH, "1850", "1851"))).toEqual([
      expect.objectContaining({ type: "short", openPrice: "1850", quantity: "0.5405" }),
    ]);
  });

  it("a long limit gapped through fills at the (better) ask; a short limit at the (better) bid", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "1990");
    // 1e9 / 195050 = 5126.8… → 5126
    expect(opens(h.price(ETH, "1950", "1950.5"))).toEqual([
      expect.objectContaining({ type: "long", openPrice: "1950.5", quantity: "0.5126" }),
    ]);
    placed(h, "alice", "2050", { side: "short" });
    // 1e9 / 208000 = 4807.6… → 4807
    expect(opens(h.price(ETH, "2080", "2081"))).toEqual([
      expect.objectContaining({ type: "short", openPrice: "2080", quantity: "0.4807" }),
    ]);
  });

  it("longs watch the ask, shorts the bid: a widening spread alone fills a stop", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "2010", { type: "stop" });
    placed(h, "alice", "1985"); // long limit: ask ≤ 1985
    expect(opens(h.price(ETH, "1980", "1995"))).toEqual([]); // the bid below the long limit does not fill it
    h.price(ETH, "2000", "2001");
    placed(h, "alice", "1990", { side: "short", type: "stop" });
    // Mid unchanged (2000.25), spread 19.5: the ask reaches the long stop, the bid is still above the short stop.
    expect(opens(h.price(ETH, "1990.5", "2010"))).toEqual([
      expect.objectContaining({ type: "long", openPrice: "2010" }),
    ]);
    expect(opens(h.price(ETH, "1990", "2009"))).toEqual([
      expect.objectContaining({ type: "short", openPrice: "1990" }),
    ]);
    expect(h.state.accounts.get("alice")!.pendingOrders.size).toBe(1);
  });

  it("exactly at the price fills; one tick short does not", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "1990");
    expect(opens(h.price(ETH, "1989", "1990.01"))).toEqual([]);
    expect(opens(h.price(ETH, "1989", "1990"))).toEqual([expect.objectContaining({ openPrice: "1990" })]);
  });
});

describe("cost", () => {
  it("a tick that fills nothing looks only at the tops of the four fill heaps and the expiry heap", () => {
    const h = given({ eth: ["2000", "2001"], params: { maxPendingOrdersPerUser: 1_000 } });
    h.checkEveryStep = false; // the invariant check walks every heap
    for (let i = 0; i < 250; i++) {
      const expiresAtMs = h.nowMs + 60_000;
      placed(h, "alice", (1900 - i / 100).toFixed(2), { margin: "1", expiresAtMs });
      placed(h, "alice", (2100 + i / 100).toFixed(2), { margin: "1", type: "stop" });
      placed(h, "alice", (2100 + i / 100).toFixed(2), { margin: "1", side: "short" });
      placed(h, "alice", (1900 - i / 100).toFixed(2), { margin: "1", side: "short", type: "stop" });
    }
    // The pending orders' heaps (trailing stops use the same heap class, so calls are counted on these only).
    const books = h.state.pendingBooks;
    const heaps = new Set<unknown>([
      h.state.expiries,
      ...books.flatMap((b) => [b.longLimit, b.longStop, b.shortLimit, b.shortStop]),
    ]);
    const peek = vi.spyOn(PositionedHeap.prototype, "peek");
    const remove = vi.spyOn(PositionedHeap.prototype, "remove");
    const onPending = (spy: typeof peek | typeof remove) => spy.mock.contexts.filter((c) => heaps.has(c)).length;
    try {
      h.price(ETH, "1999", "2002");
      expect(onPending(peek)).toBe(5);
      expect(onPending(remove)).toBe(0);
    } finally {
      peek.mockRestore();
      remove.mockRestore();
    }
  });
});

describe("one tick: open trades' exits, then fills, then the new trades' exits", () => {
  it("fills a pending entry and hits its own stop-loss on the same tick, after an older trade's stop", () => {
    const h = given({ users: ["alice", "bob"], eth: ["2000", "2001"] });
    // bob: short at bid 2000, 5000 steps, stop-loss 2105 (liquidation 2189.06)
    const bobs = opened(h, "bob", { side: "short", stopLoss: "2105" });
    placed(h, "alice", "2100", { type: "stop", stopLoss: "2050" });
    const outputs = h.price(ETH, "2040", "2110");
    expect(outputs.map((o) => `${o.type}${"userId" in o ? ` ${o.userId}` : ""}`)).toEqual([
      "quote_updated",
      "closed_order bob",
      "balances_changed bob",
      "trade_opened alice",
      "order_updated alice",
      "balances_changed alice",
      "closed_order alice",
      "balances_changed alice",
    ]);
    const [bobClosed, aliceClosed] = ofType(outputs, "closed_order").map((o) => o.trade);
    // bob: (2000 − 2110) × 5000 steps = −55 USD
    expect(bobClosed).toMatchObject({ id: bobs.id, closeReason: "stop_loss", closePrice: "2110", pnl: "-55" });
    // alice: filled at ask 2110, 1e9 / 211000 → 4739 steps, liquidation 1908.52 (below the bid: it may open);
    // closed at bid 2040 ≤ stop-loss 2050: (204000 − 211000) × 4739 = −33,173,000 micros
    expect(opens(outputs)[0]).toMatchObject({ openPrice: "2110", quantity: "0.4739", liquidationPrice: "1908.52" });
    expect(aliceClosed).toMatchObject({
      closeReason: "stop_loss",
      openPrice: "2110",
      closePrice: "2040",
      pnl: "-33.173",
    });
    expect(usdOf(h, "alice")).toBe("9966.827");
    expect(usdOf(h, "bob")).toBe("9945");
  });

  it("a fill whose quote is already past its take-profit closes at once by that rule", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "1990", { side: "short", type: "stop", takeProfit: "1950" });
    // fills at bid 1940 (bid ≤ 1990); a short's take-profit fires when ask ≤ 1950: ask 1945
    const [closed] = ofType(h.price(ETH, "1940", "1945"), "closed_order").map((o) => o.trade);
    // 1e9 / 194000 → 5154 steps; (194000 − 194500) × 5154 = −2,577,000 micros: a take-profit that lost the spread
    expect(closed).toMatchObject({ closeReason: "take_profit", openPrice: "1940", closePrice: "1945", pnl: "-2.577" });
  });
});

describe("rejected at fill", () => {
  it("a quantity below one step at the gapped price: rejected with that code, the reservation returned", () => {
    const h = given({ eth: ["2000", "2001"] });
    // at 2010: 210000 micros / 201000 ticks → 1 step; at 2200: 210000 / 220000 → 0
    placed(h, "alice", "2010", { type: "stop", margin: "0.21", leverage: 1 });
    expect(usdOf(h, "alice")).toBe("9999.79");
    const outputs = h.price(ETH, "2199", "2200");
    expect(orderUpdates(outputs).map((o) => [o.status, o.tradeId, o.reason?.code])).toEqual([
      ["rejected", null, "QUANTITY_TOO_SMALL"],
    ]);
    expect(opens(outputs)).toEqual([]);
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("the open-trade limit reached: rejected, the next order in the heap still considered", () => {
    const h = given({ eth: ["2000", "2001"], params: { maxOpenTradesPerUser: 1 } });
    placed(h, "alice", "1990");
    placed(h, "alice", "1980");
    const outputs = h.price(ETH, "1970", "1975");
    // highest long limit first: 1990 fills, then 1980 finds the limit reached
    expect(orderUpdates(outputs).map((o) => [o.price, o.status, o.reason?.code ?? null])).toEqual([
      ["1990", "filled", null],
      ["1980", "rejected", "TOO_MANY_OPEN_TRADES"],
    ]);
    expect(orderUpdates(outputs)[1]?.reason?.message).toBe(
      "The account has reached its limit of open trades. The limit is 1; 1 is open.",
    );
    expect(usdOf(h, "alice")).toBe("9900");
  });

  it("liquidatable at the fill quote: rejected, the reason naming the liquidation price and that quote's bid", () => {
    const h = given({ eth: ["2000", "2001"] });
    placed(h, "alice", "2010", { type: "stop", leverage: 100 });
    // at ask 2100: 1e10 / 210000 → 47619 steps; liquidation ⌊(210000 × 47619 − 1e8) × 1e6 / (47619 × 995000)⌋ =
    // 208944, at or above the bid 2080
    const [rejected] = orderUpdates(h.price(ETH, "2080", "2100"));
    expect(rejected).toMatchObject({ status: "rejected", reason: { code: "WOULD_LIQUIDATE" } });
    expect(rejected?.reason?.message).toBe(
      "The trade would be liquidated as soon as it opened; lower the leverage. At leverage 100, a long opened at " +
        "2100 has liquidation price 2089.44, at or above the current bid 2080.",
    );
    expect(usdOf(h, "alice")).toBe("10000");
  });
});

describe("OCO", () => {
  it("reserves the larger leg's margin; when one fills the other is cancelled in the same step", () => {
    const h = given({ eth: ["2000", "2001"] });
    const legs = [
      entry("2010", { type: "stop" }),
      entry("1990", { side: "short", type: "stop", margin: "50" }),
    ] as const;
    const { answer, outputs } = h.instruct("alice", { kind: "place_oco", legs: [legs[0], legs[1]] });
    const { orders, balances } = resultOf(answer, "place_oco");
    expect(orders.map((o) => [o.id, o.ocoWith, o.status])).toEqual([
      ["P0-1", "P0-2", "pending"],
      ["P0-2", "P0-1", "pending"],
    ]);
    expect(balances.USD).toBe("9900"); // max(100, 50)
    expect(outputs.map((o) => o.type)).toEqual([
      "order_updated",
      "order_updated",
      "balances_changed",
      "order_response",
    ]);
    // The short stop fills at bid 1989 with its 50 USD; the 50 left of the reservation returns.
    const fill = h.price(ETH, "1989", "2000");
    expect(orderUpdates(fill).map((o) => [o.id, o.status, o.ocoWith, o.reason?.code ?? null])).toEqual([
      ["P0-2", "filled", "P0-1", null],
      ["P0-1", "cancelled", "P0-2", "OCO_CANCELLED"],
    ]);
    // 5e8 / 198900 → 2513 steps
    expect(opens(fill)).toEqual([expect.objectContaining({ margin: "50", openPrice: "1989", quantity: "0.2513" })]);
    expect(usdOf(h, "alice")).toBe("9950");
    expect(h.state.accounts.get("alice")!.pendingOrders.size).toBe(0);
  });

  it("when one quote fills both legs, the leg listed first fills, whatever the kinds", () => {
    for (const [first, second, filled] of [
      // long stop first: processed first anyway
      [entry("2010", { type: "stop" }), entry("1990", { side: "short", type: "stop", margin: "50" }), "long"],
      // short stop first: long stops are looked at first, yet the first leg wins
      [entry("1990", { side: "short", type: "stop", margin: "50" }), entry("2010", { type: "stop" }), "short"],
    ] as const) {
      const h = given({ eth: ["2000", "2001"] });
      resultOf(h.instruct("alice", { kind: "place_oco", legs: [first, second] }).answer, "place_oco");
      const outputs = h.price(ETH, "1985", "2015"); // ask ≥ 2010 and bid ≤ 1990
      expect(orderUpdates(outputs).map((o) => [o.id, o.status])).toEqual([
        ["P0-1", "filled"],
        ["P0-2", "cancelled"],
      ]);
      const [trade] = opens(outputs);
      expect(trade?.type).toBe(filled);
      // long: at ask 2015, 1e9 / 201500 → 4962 steps, 100 USD locked; short: at bid 1985, 5e8 / 198500 → 2518 steps,
      // 50 locked and 50 back.
      if (filled === "long") {
        expect(trade).toMatchObject({ openPrice: "2015", quantity: "0.4962", margin: "100" });
        expect(usdOf(h, "alice")).toBe("9900");
      } else {
        expect(trade).toMatchObject({ openPrice: "1985", quantity: "0.2518", margin: "50" });
        expect(usdOf(h, "alice")).toBe("9950");
      }
    }
  });

  it("cancelling one leg leaves the other pending alone, reserving only its own margin", () => {
    const h = given({ eth: ["2000", "2001"] });
    h.instruct("alice", {
      kind: "place_oco",
      legs: [entry("2010", { type: "stop" }), entry("1990", { side: "short", type: "stop", margin: "50" })],
    });
    const { answer, outputs } = h.instruct("alice", { kind: "cancel_order", orderId: "P0-1" });
    // 100 reserved for the pair; the short stop alone reserves 50: 50 returns
    expect(resultOf(answer, "cancel_order").balances.USD).toBe("9950");
    expect(orderUpdates(outputs).map((o) => [o.id, o.status, o.ocoWith])).toEqual([
      ["P0-1", "cancelled", "P0-2"],
      ["P0-2", "pending", null],
    ]);
    h.instruct("alice", { kind: "cancel_order", orderId: "P0-2" });
    expect(usdOf(h, "alice")).toBe("10000");
  });

  it("a leg left alone keeps its placement as updatedAt: its status did not change", () => {
    const h = given({ eth: ["2000", "2001"] });
    const placedAt = new Date(h.nowMs).toISOString();
    const pair = (legs: [ReturnType<typeof entry>, ReturnType<typeof entry>]) =>
      resultOf(h.instruct("alice", { kind: "place_oco", legs }).answer, "place_oco").orders;
    // The first leg cancelled, expired (at T, seen on a later input) or rejected at fill: the other stays pending.
    const [cancelled, alone] = pair([entry("1990"), entry("1980")]);
    const expireAt = h.nowMs + 1_000;
    const [expiring, alsoAlone] = pair([entry("1990", { expiresAtMs: expireAt }), entry("1980")]);
    const [tooSmall, leftAlone] = pair([entry("2010", { type: "stop", margin: "0.21", leverage: 1 }), entry("1980")]);
    h.advance(5_000);
    const expire = h.price(ETH, "2000", "2001");
    const cancel = h.instruct("alice", { kind: "cancel_order", orderId: cancelled.id }).outputs;
    const reject = h.price(ETH, "2199", "2200"); // at 2200, 0.21 USD is less than one step: rejected
    const views = [...orderUpdates(expire), ...orderUpdates(cancel), ...orderUpdates(reject)];
    expect(views.map((o) => [o.id, o.status, o.ocoWith, o.updatedAt])).toEqual([
      [expiring.id, "expired", alsoAlone.id, new Date(expireAt).toISOString()],
      [alsoAlone.id, "pending", null, placedAt],
      [cancelled.id, "cancelled", alone.id, new Date(h.nowMs).toISOString()],
      [alone.id, "pending", null, placedAt],
      [tooSmall.id, "rejected", leftAlone.id, new Date(h.nowMs).toISOString()],
      [leftAlone.id, "pending", null, placedAt],
    ]);
    expect(views.every((o) => o.placedAt === placedAt)).toBe(true);
  });

  it("refuses a pair with a bad leg, naming it, and needs the larger margin free", () => {
    const h = given({ eth: ["2000", "2001"] });
    const bad = h.instruct("alice", { kind: "place_oco", legs: [entry("1990"), entry("2001")] }).answer;
    expect(codeOf(bad)).toBe("WOULD_FILL_NOW");
    // The leg as the API names a field in it (legs.1.price): the second, counted from 0.
    expect(bad.ok ? "" : bad.error.message).toMatch(
      /^legs\.1: The order would fill at once.* A long limit at 2001 would fill at the current ask 2001\.$/,
    );
    const tooBig = h.instruct("alice", {
      kind: "place_oco",
      legs: [entry("1990", { margin: "10000.01" }), entry("1980")],
    }).answer;
    expect(codeOf(tooBig)).toBe("INSUFFICIENT_BALANCE");
    resultOf(
      h.instruct("alice", {
        kind: "place_oco",
        legs: [entry("1990", { margin: "10000" }), entry("1980", { margin: "9000" })],
      }).answer,
      "place_oco",
    );
    expect(usdOf(h, "alice")).toBe("0");
  });
  it("an OCO leg and a lone order on another market: the SOL leg fills, the ETH leg is cancelled", () => {
    const h = given({ eth: ["2000", "2001"] });
    h.price("SOL_USDC_PERP", "150", "150.05");
    placed(h, "alice", "1990"); // unrelated, stays
    resultOf(
      h.instruct("alice", {
        kind: "place_oco",
        legs: [entry("2010", { type: "stop" }), entry("149", { asset: "SOL", margin: "30" })],
      }).answer,
      "place_oco",
    );
    const outputs = h.price("SOL_USDC_PERP", "148.9", "149");
    expect(outputs.filter((o) => o.type === "order_updated").map((o) => [o.order.id, o.order.status])).toEqual([
      ["P0-3", "filled"],
      ["P0-2", "cancelled"],
    ]);
    // 10,000 − 100 (P0-1) − 30 (the SOL trade); the pair's other 70 returned
    expect(h.state.accounts.get("alice")!.usd).toBe(9_870 * 1_000_000);
    expect(h.price(ETH, "2010", "2011").some((o) => o.type === "trade_opened")).toBe(false);
  });
});
