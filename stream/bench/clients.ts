/**
 * One of bench:stream's client processes (stream.bench.ts forks several, so that reading a thousand sockets is not
 * one event loop's queue counted as stream latency). It opens the sockets it is sent, timestamps every frame as it
 * arrives, and reports the arrivals back when asked; the bench matches them to its ticks and orders.
 *
 * The clock is `performance.timeOrigin + performance.now()` on both sides: wall-clock milliseconds, sub-millisecond,
 * comparable across processes of one machine.
 *
 * IPC (advanced serialisation), bench → client:
 * - `{op:"connect", id, sockets:[{url, subs}]}` → `{op:"connected", id, error?}` once each socket is welcomed (and
 *   snapshotted when it subscribes to its private channel);
 * - `{op:"collect", id, reset}` → `{op:"collected", id, open, quoteKeys, quoteAt, trades, tradeAt}`: the quote
 *   frames ("<asset> <updatedAt as ms>" and arrival time) and `trade_opened` events (trade id and arrival time)
 *   since the last reset, and how many sockets are open; `reset` starts a fresh record;
 * The bench ends it by closing the IPC channel: it then terminates its sockets and exits.
 */
import { WebSocket } from "ws";

interface SocketSpec {
  url: string;
  subs: object[];
}
type Request = { op: "connect"; id: number; sockets: SocketSpec[] } | { op: "collect"; id: number; reset: boolean };

const now = () => performance.timeOrigin + performance.now();
const sockets: { ws: WebSocket; open: boolean }[] = [];
let quoteKeys: string[] = [];
let quoteAt: number[] = [];
let trades: string[] = [];
let tradeAt: number[] = [];

function connect({ url, subs }: SocketSpec): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const s = { ws, open: false };
    sockets.push(s);
    const wantsSnapshot = subs.some((x) => (x as { channel: string }).channel === "private");
    ws.on("message", (data) => {
      const at = now();
      const frame = JSON.parse((data as Buffer).toString()) as Record<string, unknown>;
      switch (frame.type) {
        case "quote":
          quoteKeys.push(`${String(frame.asset)} ${Date.parse(String(frame.updatedAt))}`);
          quoteAt.push(at);
          return;
        case "event":
          if (frame.event === "trade_opened") {
            trades.push((frame.trade as { id: string }).id);
            tradeAt.push(at);
          }
          return;
        case "welcome":
          s.open = true;
          for (const sub of subs) ws.send(JSON.stringify({ op: "subscribe", ...sub }));
          if (!wantsSnapshot) resolve();
          return;
        case "snapshot":
          resolve();
          return;
      }
    });
    ws.on("close", () => (s.open = false));
    ws.on("error", reject);
  });
}

process.on("message", (message: Request) => {
  switch (message.op) {
    case "connect":
      Promise.all(message.sockets.map(connect)).then(
        () => process.send!({ op: "connected", id: message.id }),
        (error: unknown) => process.send!({ op: "connected", id: message.id, error: String(error) }),
      );
      return;
    case "collect":
      process.send!({
        op: "collected",
        id: message.id,
        open: sockets.filter((s) => s.open).length,
        quoteKeys,
        quoteAt: Float64Array.from(quoteAt),
        trades,
        tradeAt: Float64Array.from(tradeAt),
      });
      if (message.reset) [quoteKeys, quoteAt, trades, tradeAt] = [[], [], [], []];
      return;
  }
});
process.on("disconnect", () => {
  for (const s of sockets) s.ws.terminate();
});
