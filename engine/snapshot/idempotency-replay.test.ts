// The fair total cap on remembered requests across a restore: a snapshot taken anywhere in a flood, restored (its
// owners packed and not indexed) and run on, evicts exactly what the original did, so state hash and answers agree.
import { describe, expect, it } from "vitest";
import { apply } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { EngineHarness } from "../testing/engine-harness.ts";
import { decodeSnapshot, encodeSnapshot } from "./codec.ts";
import { stateHash } from "./hash.ts";

describe("snapshot + replay mid-flood at the total idempotency cap", () => {
  const overrides = { idempotencyMaxEntries: 7, idempotencyMaxPerUser: 50 };
  // Two flooders at different rates and two quiet users, so the busiest changes hands, ties happen, and a restored
  // owner is evicted from before anything indexes it (a quiet user's add evicts from a flooder).
  const h = new EngineHarness(overrides);
  for (const user of ["flooder", "second", "quiet", "rare"]) h.createAccount(user);
  const junk = (user: string, requestId: string) =>
    h.instruct(user, { kind: "spot_order", asset: "NOPE", side: "buy", quantity: "1" }, requestId);
  for (let i = 0; i < 40; i++) {
    junk("flooder", `f${i}`);
    if (i % 3 === 0) junk("second", `s${i}`);
    if (i % 5 === 0) junk("quiet", `q${i}`);
    if (i % 11 === 0) junk("rare", `r${i}`);
    if (i % 4 === 0) junk("flooder", `f${i - 1}`); // a repeat: answered from memory, nothing added
    h.advance(1);
  }
  const log = h.log;

  it("gives the same state hash and the same outputs from a snapshot at every point", () => {
    const params = makeParams(overrides);
    const reference = createState(params);
    const referenceOutputs = log.map((e) => apply(reference, e));
    expect(reference.idempotency.size).toBe(7);
    for (let cut = 0; cut <= log.length; cut++) {
      const before = createState(params);
      for (const e of log.slice(0, cut)) apply(before, e);
      const restored = decodeSnapshot(encodeSnapshot(before));
      const restoredOutputs = log.slice(cut).map((e) => apply(restored, e));
      expect(restoredOutputs).toEqual(referenceOutputs.slice(cut));
      expect(stateHash(restored)).toBe(stateHash(reference));
    }
  });
});
