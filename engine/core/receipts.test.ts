import { describe, expect, it } from "vitest";
import { ASSET_BY_SYMBOL } from "../../contract/markets.ts";
import { priceRule } from "./receipts.ts";

describe("priceRule", () => {
  it("names the asset's range and decimals, one decimal in the singular", () => {
    expect(priceRule(ASSET_BY_SYMBOL.get("ETH")!)).toBe("a positive price up to 1000000 with at most 2 decimals");
    expect(priceRule(ASSET_BY_SYMBOL.get("BTC")!)).toBe("a positive price up to 10000000 with at most 1 decimal");
  });
});
