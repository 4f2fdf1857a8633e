/**
 * A server of `npm start`'s own (its Redis, its Postgres: a LocalServer with `started`) kept running while the
 * system runs: checked every `checkEveryMs` (1 s), and when its process has died, started again on the same port,
 * which the components were given and reconnect to by themselves. When, by the components' crash-loop rule
 * (restart-backoff.ts): at once if it had served `stableMs` (10 s) up to the last check that found it alive; else, and after a start that failed (its port
 * taken by something else, its data folder broken), after a backoff of 1 s doubling to 30 s.
 *
 * Logged as `<name>_died` (error, with `restartInMs`), then `<name>_restarted`, or `<name>_restart_failed` (error,
 * with `failures` in a row and `restartInMs` to the next try), and from the second failure in a row
 * `<name>_crash_loop` (warn). A server that is someone else's (`started` false) is not watched: it is not
 * `npm start`'s to restart.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { where, type LocalServer } from "./local-servers.ts";
import type { Logger } from "./log.ts";
import { RestartBackoff, type Restart } from "./restart-backoff.ts";

const CHECK_EVERY_MS = 1_000;

export class WatchedServer {
  /** Aborted by stop() or by the signal given to watch(): ends the watch, its waits included. */
  private readonly stopping = new AbortController();
  private watching: Promise<void> = Promise.resolve();
  private readonly backoff: RestartBackoff;
  private readonly checkEveryMs: number;

  constructor(
    private readonly name: string,
    private server: LocalServer,
    /** Starts it on exactly `port`: the components were given that address. */
    private readonly restart: (port: number) => Promise<LocalServer>,
    private readonly log: Logger,
    options: { checkEveryMs?: number; stableMs?: number } = {},
  ) {
    this.checkEveryMs = options.checkEveryMs ?? CHECK_EVERY_MS;
    this.backoff = new RestartBackoff(options.stableMs);
  }

  get url(): string {
    return this.server.url;
  }

  /** Checks it every `checkEveryMs`, and starts it again when it died, until `until` aborts or stop(). */
  watch(until: AbortSignal): void {
    if (!this.server.started) return;
    until.addEventListener("abort", () => this.stopping.abort(), { once: true });
    if (until.aborted) this.stopping.abort();
    this.watching = this.loop();
  }

  /** Stops it, once a restart under way has ended; a backoff under way is cut short. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.watching;
    await this.server.stop();
  }

  private async loop(): Promise<void> {
    let upSinceMs = performance.now();
    // When it was last found alive: what it served is counted to there, since it may have died just after (counted to
    // when it was found dead, a server dying every 10 s would pass for a stable one).
    let aliveAtMs = upSinceMs;
    while (await this.pause(this.checkEveryMs)) {
      const checkedAtMs = performance.now();
      if (await this.server.alive()) {
        aliveAtMs = checkedAtMs;
        continue;
      }
      const servedMs = aliveAtMs - upSinceMs;
      let next = this.backoff.ended(servedMs);
      this.log.error(`${this.name}_died`, {
        at: where(this.server.url),
        upMs: Math.round(servedMs),
        restartInMs: next.restartInMs,
      });
      this.warnOfCrashLoop(next);
      for (;;) {
        if (!(await this.pause(next.restartInMs))) return;
        try {
          // Kept even when stopping meanwhile: stop() waits for this, then stops it.
          this.server = await this.restart(Number(new URL(this.server.url).port));
          upSinceMs = aliveAtMs = performance.now();
          this.log.info(`${this.name}_restarted`, { at: where(this.server.url) });
          break;
        } catch (error) {
          next = this.backoff.ended(undefined);
          this.log.error(`${this.name}_restart_failed`, {
            error,
            failures: next.failures,
            restartInMs: next.restartInMs,
          });
          this.warnOfCrashLoop(next);
        }
      }
    }
  }

  private warnOfCrashLoop({ crashLoop, failures, restartInMs }: Restart): void {
    if (crashLoop) this.log.warn(`${this.name}_crash_loop`, { at: where(this.server.url), failures, restartInMs });
  }

  /** Waits `ms`; false when stopped first (or already). */
  private pause(ms: number): Promise<boolean> {
    return sleep(ms, true, { signal: this.stopping.signal }).catch(() => false);
  }
}
