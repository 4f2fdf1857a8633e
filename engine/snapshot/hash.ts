/** Canonical state hash: SHA-256 of the canonical snapshot encoding. Equal hashes ⇔ equal engine states. */
import { createHash } from "node:crypto";
import type { EngineState } from "../core/state.ts";
import { encodeSnapshot } from "./codec.ts";

export function stateHash(state: EngineState): string {
  return hashSnapshot(encodeSnapshot(state));
}

export function hashSnapshot(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
