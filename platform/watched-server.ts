/**
 * A server of `npm start`'s own (its Redis, its Postgres: a LocalServer with `started`) kept running while the
 * system runs: checked every `checkEveryMs` (1 s), and when its process has died, started again on the same port,
 * which the components were given and reconnect to by themselves. Logged as `<name>_died` (error), then
 * `<name>_restarted`, or `<name>_restart_failed` (error) and another try at the next check. A server that is someone
 * else's (`started` false) is not watched: it is not `npm start`'s to restart.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { where, type LocalServer } from "./local-servers.ts";
import type { Logger } from "./log.ts";

const CHECK_EVERY_MS = 1_000;

export class WatchedServer {
  private restarting: Promise<void> | undefined;
  private stopping = false;
  private readonly checkEveryMs: number;

  constructor(
    private readonly name: string,
    private server: LocalServer,
    /** Starts it on exactly `port`: the components were given that address. */
    private readonly restart: (port: number) => Promise<LocalServer>,
    private readonly log: Logger,
    options: { checkEveryMs?: number } = {},
  ) {
    this.checkEveryMs = options.checkEveryMs ?? CHECK_EVERY_MS;
  }

  get url(): string {
    return this.server.url;
  }

  /** Checks it every `checkEveryMs` until `until` aborts or stop(). */
  watch(until: AbortSignal): void {
    void this.loop(until);
  }

  /** Stops it, once a restart under way has ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.restarting;
    await this.server.stop();
  }

  private async loop(until: AbortSignal): Promise<void> {
    while (!until.aborted && !this.stopping) {
      await sleep(this.checkEveryMs, undefined, { signal: until }).catch(() => undefined);
      if (!until.aborted) await this.check();
    }
  }

  /** Starts it again if it died; an error is logged, and the next check tries again. */
  private async check(): Promise<void> {
    if (this.stopping || !this.server.started || (await this.server.alive())) return;
    this.log.error(`${this.name}_died`, { at: where(this.server.url) });
    this.restarting = (async () => {
      try {
        const next = await this.restart(Number(new URL(this.server.url).port));
        // Stopping meanwhile: stop() waits for this and then stops the dead handle, so this one is ours to stop.
        if (this.stopping) return void (await next.stop());
        this.server = next;
        this.log.info(`${this.name}_restarted`, { at: where(next.url) });
      } catch (error) {
        this.log.error(`${this.name}_restart_failed`, { error });
      }
    })();
    await this.restarting;
    this.restarting = undefined;
  }
}
