import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isPrivateOutput } from "../../contract/messages.ts";
import { apply } from "../core/apply.ts";
import { makeParams } from "../core/params.ts";
import { createState } from "../core/state.ts";
import { commandsArbitrary, toLog } from "../testing/random-log.ts";
import { decodeSnapshot, encodeSnapshot } from "./codec.ts";
import { stateHash } from "./hash.ts";

describe("snapshot + replay", () => {
  it("restoring a snapshot taken at any point and applying the rest equals applying everything", () => {
    fc.assert(
      fc.property(commandsArbitrary(), fc.nat(), fc.constantFrom(8, 1), (commands, cutSeed, maxOpenTradesPerUser) => {
        const log = toLog(commands);
        const cut = cutSeed % (log.length + 1);
        // Small idempotency caps, so per-user and global eviction (and the slots they leave) cross snapshots; an
        // open-trade limit of 1 rejects many pending orders at fill.
        const params = makeParams({ maxOpenTradesPerUser, idempotencyMaxPerUser: 4, idempotencyMaxEntries: 9 });

        const reference = createState(params);
        const referenceOutputs = log.map((e) => apply(reference, e));

        const before = createState(params);
        for (const e of log.slice(0, cut)) apply(before, e);
        const bytes = encodeSnapshot(before);
        const restored = decodeSnapshot(bytes);
        expect(encodeSnapshot(restored)).toEqual(bytes);

        const restoredOutputs = log.slice(cut).map((e) => apply(restored, e));
        expect(stateHash(restored)).toBe(stateHash(reference));
        // The restored engine also says exactly what the original said, ids and each user's seq included: its
        // numbering goes on from the snapshot's.
        expect(restoredOutputs).toEqual(referenceOutputs.slice(cut));
        const next = new Map<string, number>();
        for (const o of restoredOutputs.flat().filter(isPrivateOutput)) {
          expect(o.seq).toBe(next.get(o.userId) ?? (before.accounts.get(o.userId)?.eventSeq ?? 0) + 1);
          next.set(o.userId, o.seq + 1);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("replaying entries at or below the snapshot's cursor changes nothing", () => {
    fc.assert(
      fc.property(commandsArbitrary(60), (commands) => {
        const log = toLog(commands);
        const state = createState(makeParams());
        for (const e of log) apply(state, e);
        const hash = stateHash(state);
        for (const e of log) expect(apply(state, e)).toEqual([]);
        expect(stateHash(state)).toBe(hash);
      }),
      { numRuns: 100 },
    );
  });
});
