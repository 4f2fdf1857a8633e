// docs/stream.md names every private event the stream sends and every reason a trade_updated gives, as the contract
// defines them: a new one fails here until it is documented.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { privateOutputSchema, tradeUpdatedOutputSchema } from "../contract/messages.ts";

const doc = readFileSync(new URL("../docs/stream.md", import.meta.url), "utf8");

describe("docs/stream.md", () => {
  it("names every private event type", () => {
    const listed = /`event` is the engine's output type\s*\(([^)]*)\)/.exec(doc)?.[1] ?? "";
    const types = privateOutputSchema.options.map((o) => o.shape.type.value);
    expect([...listed.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]).sort()).toEqual([...types].sort());
  });

  it("says what each trade_updated change means", () => {
    const rows = [...doc.matchAll(/^\| `([a-z_]+)` +\| /gm)].map((m) => m[1]);
    for (const change of tradeUpdatedOutputSchema.shape.change.options) expect(rows).toContain(change);
  });
});
