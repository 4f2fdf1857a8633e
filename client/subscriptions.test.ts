// The client's model of what a socket is subscribed to follows the server's rules (docs/stream.md, Client frames).
import { describe, expect, it } from "vitest";
import type { Subscription } from "./protocol.ts";
import { applySubscription, NO_SUBSCRIPTIONS, subscriptionsOf, type SubscriptionOp } from "./subscriptions.ts";

/** The subscribes that rebuild the set after `requests`, in order, from nothing. */
function after(...requests: [SubscriptionOp, Subscription][]): Subscription[] {
  let set = NO_SUBSCRIPTIONS;
  for (const [op, subscription] of requests) set = applySubscription(set, op, subscription);
  return subscriptionsOf(set);
}

describe("quotes", () => {
  it("add up per asset, and all quotes cover every asset", () => {
    expect(
      after(
        ["subscribe", { channel: "quotes", assets: ["SOL"] }],
        ["subscribe", { channel: "quotes", assets: ["ETH", "SOL"] }],
      ),
    ).toEqual([{ channel: "quotes", assets: ["ETH", "SOL"] }]);
    expect(after(["subscribe", { channel: "quotes", assets: ["SOL"] }], ["subscribe", { channel: "quotes" }])).toEqual([
      { channel: "quotes" },
    ]);
    expect(after(["subscribe", { channel: "quotes" }], ["subscribe", { channel: "quotes", assets: ["SOL"] }])).toEqual([
      { channel: "quotes" },
    ]);
  });

  it("unsubscribing some assets from all quotes leaves the others", () => {
    const rest = after(
      ["subscribe", { channel: "quotes" }],
      ["unsubscribe", { channel: "quotes", assets: ["BTC", "SOL", "ADA"] }],
    );
    expect(rest).toEqual([{ channel: "quotes", assets: ["ETH"] }]);
  });

  it("unsubscribing without assets stops every asset, however they were subscribed", () => {
    expect(
      after(["subscribe", { channel: "quotes", assets: ["ETH"] }], ["unsubscribe", { channel: "quotes" }]),
    ).toEqual([]);
    expect(after(["subscribe", { channel: "quotes" }], ["unsubscribe", { channel: "quotes" }])).toEqual([]);
    expect(
      after(
        ["subscribe", { channel: "quotes", assets: ["ETH", "BTC"] }],
        ["unsubscribe", { channel: "quotes", assets: ["BTC"] }],
      ),
    ).toEqual([{ channel: "quotes", assets: ["ETH"] }]);
  });
});

describe("candles and the private channel", () => {
  it("a candle series per asset and interval; private on or off; what is not held unsubscribes to no change", () => {
    expect(
      after(
        ["subscribe", { channel: "candles", asset: "BTC", interval: "1m" }],
        ["subscribe", { channel: "candles", asset: "BTC", interval: "5m" }],
        ["subscribe", { channel: "candles", asset: "BTC", interval: "1m" }],
        ["unsubscribe", { channel: "candles", asset: "ETH", interval: "1m" }],
        ["subscribe", { channel: "private" }],
        ["unsubscribe", { channel: "quotes", assets: ["ETH"] }],
      ),
    ).toEqual([
      { channel: "candles", asset: "BTC", interval: "1m" },
      { channel: "candles", asset: "BTC", interval: "5m" },
      { channel: "private" },
    ]);
    expect(after(["subscribe", { channel: "private" }], ["unsubscribe", { channel: "private" }])).toEqual([]);
  });
});

describe("the types", () => {
  it("take only listed assets, spelt as listed", () => {
    // @ts-expect-error: not a listed asset
    const unlisted: Subscription = { channel: "quotes", assets: ["DOGE"] };
    // @ts-expect-error: symbols are upper case
    const lowerCase: Subscription = { channel: "candles", asset: "eth", interval: "1m" };
    expect([unlisted, lowerCase]).toHaveLength(2);
  });
});
