/**
 * One application of one input: its id, its log time and the outputs it produces, in order. Output ids are
 * `<input id>:<n>`, so a replay of the same input re-emits outputs with the same ids.
 */
import type { EngineOutput } from "../../contract/messages.ts";

export interface Step {
  readonly inputId: string;
  readonly nowMs: number;
  readonly outputs: EngineOutput[];
}

type Unnumbered<T> = T extends EngineOutput ? Omit<T, "id" | "inputId"> : never;

export function emit(step: Step, output: Unnumbered<EngineOutput>): void {
  step.outputs.push({ id: `${step.inputId}:${step.outputs.length}`, inputId: step.inputId, ...output } as EngineOutput);
}

/** Parses a Redis stream entry id "<ms>-<seq>". A malformed id is a runner bug, not user input: it throws. */
export function parseInputId(id: string): { ms: number; seq: number } {
  const dash = id.indexOf("-");
  const ms = Number(id.slice(0, dash));
  const seq = Number(id.slice(dash + 1));
  if (dash <= 0 || !/^\d+-\d+$/.test(id) || !Number.isSafeInteger(ms) || !Number.isSafeInteger(seq)) {
    throw new Error(`malformed input id: ${id}`);
  }
  return { ms, seq };
}

export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
