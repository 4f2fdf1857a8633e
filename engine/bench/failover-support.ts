/**
 * Support for `npm run bench:failover`: the engine processes kept running as a supervisor keeps them (one that dies
 * is replaced at once), which of them leads (the lease's value, "<host>:<pid>:<fencing token>", names its pid), and
 * one client trading back to back over HTTP that records when each accepted order was sent and answered.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { componentNamed } from "../../platform/components.ts";
import type { Child, LogLine } from "../../platform/testing/processes.ts";

const READY_EVENT = componentNamed("engine").readyEvent;
/** More engine exits than this that the bench did not cause end the run. */
const MAX_UNASKED_EXITS = 3;

/** One engine process the pool started, and when. */
export interface EngineRun {
  readonly child: Child;
  readonly spawnedAt: number;
}

export class EnginePool {
  readonly runs: EngineRun[] = [];
  private readonly signalled = new Set<EngineRun>();
  private stopping = false;

  /** `spawn(name)` starts one engine process; the pool keeps `size` of them alive until `stop`. */
  constructor(
    private readonly spawn: (name: string) => Child,
    private readonly size: number,
  ) {}

  start(): void {
    for (let i = 0; i < this.size; i++) this.launch();
  }

  /** Engines alive and not signalled by `signal`: one stopping (a leader saving its final snapshot) is not counted. */
  serving(): EngineRun[] {
    return this.runs.filter((r) => r.child.alive() && !this.signalled.has(r));
  }

  /** Sends `sig` to one engine; its exit is then not counted as unexpected, and the pool replaces it. */
  signal(run: EngineRun, sig: NodeJS.Signals): void {
    this.signalled.add(run);
    run.child.proc.kill(sig);
  }

  /** Engines that exited without a signal from `signal` (a crash, a deposed leader's exit). */
  exitedUnasked(): EngineRun[] {
    return this.runs.filter((r) => !r.child.alive() && !this.signalled.has(r));
  }

  /** Throws, with the last crash's lines, once more than `max` engines exited unasked: a crash loop. */
  assertNoCrashLoop(max = MAX_UNASKED_EXITS): void {
    const crashed = this.exitedUnasked();
    if (crashed.length <= max) return;
    const last = crashed.at(-1)!.child;
    throw new Error(
      `${crashed.length} engines exited unasked; the last, ${last.name}:\n${last.raw.slice(-8).join("\n")}`,
    );
  }

  /** The line that says this engine is serving, as leader or as standby (its `role`), once logged. */
  static ready(run: EngineRun): LogLine | undefined {
    return run.child.lines.find((l) => l.event === READY_EVENT);
  }

  /** The live engine holding the lease, if any. */
  async leader(redis: Redis, leaseKey: string): Promise<EngineRun | undefined> {
    const value = await redis.get(leaseKey);
    const pid = Number(value?.split(":").at(-2));
    return this.serving().find((r) => r.child.proc.pid === pid);
  }

  /** The leader, once every engine of the pool is alive and ready (the others as hot standbys). */
  async allReady(redis: Redis, leaseKey: string): Promise<EngineRun | undefined> {
    this.assertNoCrashLoop();
    const serving = this.serving();
    if (serving.length < this.size || !serving.every((r) => EnginePool.ready(r) !== undefined)) return undefined;
    return this.leader(redis, leaseKey);
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    this.stopping = true;
    await Promise.all(this.runs.map((r) => r.child.stop(signal)));
  }

  private launch(): void {
    const run = { child: this.spawn(`engine-${this.runs.length + 1}`), spawnedAt: Date.now() };
    this.runs.push(run);
    void run.child.exited.then(() => {
      if (!this.stopping) this.launch();
    });
  }
}

/** An accepted order: when the attempt that got the 2xx was sent and when its answer came (Date.now() ms). */
export interface Accepted {
  readonly sentAt: number;
  readonly doneAt: number;
}

const CREATE_BODY = JSON.stringify({ asset: "ETH", type: "long", margin: "10", leverage: 2 });
const TRADE_ID = /"id":"([^"]+)"/;

/**
 * One user opening a small trade and closing it, back to back. A 503 (no engine holds the lease) and a timeout
 * (504, or no answer at all) are retried at once under the same Idempotency-Key, so an order the engine did take is
 * answered with its first answer; anything else is counted by status and body, and the round trip starts over. The
 * 503's Retry-After (1 s) is not waited for: the bench measures how long no engine answers, to the millisecond.
 */
export class TradingClient {
  readonly accepted: Accepted[] = [];
  unavailable = 0;
  timeouts = 0;
  readonly errors = new Map<string, number>();
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly baseUrl: string,
    token: string,
    private readonly requestTimeoutMs: number,
  ) {
    this.headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  }

  start(): void {
    this.running = true;
    this.loop = this.trade();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** When the first order sent at or after `at` was answered; waits for it up to `timeoutMs`. */
  async firstSentAfter(at: number, timeoutMs: number): Promise<Accepted> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.accepted.find((a) => a.sentAt >= at);
      if (found !== undefined) return found;
      if (Date.now() > until) throw new Error(`no order accepted within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** How long the client has been trading without a gap longer than `gapMs`, up to now. */
  tradingForMs(gapMs: number): number {
    const now = Date.now();
    let start = now;
    for (let i = this.accepted.length - 1; i >= 0; i--) {
      const a = this.accepted[i]!;
      if (start - a.doneAt > gapMs) break;
      start = a.doneAt;
    }
    return now - start;
  }

  private async trade(): Promise<void> {
    while (this.running) {
      const opened = await this.order("/api/v1/trade/create", CREATE_BODY);
      const id = opened === undefined ? undefined : TRADE_ID.exec(opened)?.[1];
      if (id !== undefined) await this.order("/api/v1/trade/close", JSON.stringify({ tradeId: id }));
    }
  }

  /** One order until it is accepted (its body) or refused (undefined). */
  private async order(path: string, body: string): Promise<string | undefined> {
    const headers = { ...this.headers, "idempotency-key": randomUUID() };
    while (this.running) {
      const sentAt = Date.now();
      let status = 0;
      let text = "";
      try {
        const res = await fetch(this.baseUrl + path, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(this.requestTimeoutMs),
        });
        status = res.status;
        text = await res.text();
      } catch (err) {
        text = String(err);
      }
      if (status >= 200 && status < 300) {
        this.accepted.push({ sentAt, doneAt: Date.now() });
        return text;
      }
      if (status === 503) this.unavailable++;
      else if (status === 504 || status === 0) this.timeouts++;
      else {
        const what = `${status} ${path} ${text.slice(0, 160)}`;
        this.errors.set(what, (this.errors.get(what) ?? 0) + 1);
        return undefined;
      }
    }
    return undefined;
  }
}
