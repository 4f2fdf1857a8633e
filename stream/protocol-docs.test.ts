// docs/stream.md names every private event the stream sends and every reason a trade_updated gives, as the contract
// defines them, and the close codes the server sends (client/protocol.ts): a new one fails here until it is
// documented. That the server sends them as said: frames.int.test.ts.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLOSE_CODES } from "../client/protocol.ts";
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

  it("lists every close code the server sends, and 1006, which a client sees of a socket cut without one", () => {
    const section = doc.slice(doc.indexOf("## Limits and close codes"), doc.indexOf("## Liveness"));
    const rows = [...section.matchAll(/^\| (\d{4}) +\| /gm)].map((m) => Number(m[1]));
    expect(rows).toEqual([...Object.values(CLOSE_CODES), 1006].sort((a, b) => a - b));
  });
});
