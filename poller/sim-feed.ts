/**
 * A local feed that speaks Backpack's bookTicker and markPrice protocol, for tests and for offline local runs.
 *
 * Protocol (JSON text frames over one WebSocket):
 * - `{"method":"SUBSCRIBE","params":["bookTicker.ETH_USDC_PERP","markPrice.ETH_USDC_PERP",…]}`: the connection
 *   then receives `{"stream","data":{e,E,T,s,a,A,b,B,u}}` book frames for those markets, starting with the current
 *   quote, and `{"stream","data":{e,E,s,p,f,i,n,T}}` mark price frames every `heartbeatMs` (1 s, as Backpack),
 *   whether or not the walk moves: a paused walk is a quiet market, still live. A market whose book frame is
 *   `bookRefreshMs` (5 s) old gets another with its next mark price frame, the same prices with new sizes: the
 *   sizes at the top of a live book keep changing while its prices stand still, and the poller vouches only for a
 *   book that shows itself (heartbeat.ts). `UNSUBSCRIBE` undoes a subscription. Unknown streams get a
 *   Backpack-style `{"id":…,"error":{"code":4006,"message":"Invalid stream: …"}}` answer.
 * - Control, so a test or another process can drive prices: `{"method":"SET_QUOTE","params":{"market","bid","ask"}}`
 *   sets an exact quote and sends it at once; `PAUSE_WALK` / `RESUME_WALK` stop and restart the random walk
 *   (scripted-only mode); `HALT_MARKET` / `RESUME_MARKET` (`params: {"market"}`) stop every frame of one market (a
 *   market halted at the exchange while others flow) and start them again with its current quote;
 *   `LOSE_BOOK_SUBSCRIPTION` (`params: {"market"}`) forgets every connection's subscription to the market's
 *   bookTicker, telling no one, as an exchange that lost it while the connection and its other streams go on: the
 *   market's book frames stop until the client subscribes it again. Answers:
 *   `{"id":…,"result":"ok"}` or `{"id":…,"error":{"code":400,"message":…}}`.
 * - A frame that is not JSON, or not a JSON object, gets `{"id":null,"error":{"code":400,"message":…}}`; a request
 *   whose `method` or `params` are not of the expected types gets the same answer, naming the field, what it
 *   expected and what it got. Every client frame is untrusted: nothing in one can throw out of the socket's
 *   listener, where it would end the process that runs the sim (the poller, with `FEED=sim` or its `auto` fallback).
 *
 * Prices move by a random walk in integer ticks of each market's `priceDecimals`, with a spread of a few basis
 * points. Each market starts from the quote given in `startQuotes` (the last one before a restart, so the price
 * series goes on instead of a gap being invented that fires stops and liquidations), else from a realistic level.
 * A start quote that is not a valid quote of a known market is ignored: that market starts at its level. A market
 * does not walk until a subscriber has been sent its quote, so the first frame of each market is its starting
 * quote. Update ids start at the wall clock in microseconds, so they keep increasing across restarts of the
 * simulator, as a real exchange's do.
 */
import { WebSocketServer, type WebSocket } from "ws";
import { ASSETS, type AssetConfig } from "../contract/markets.ts";
import { decimalsWord, formatUnits, parseUnits } from "../contract/money.ts";
import { frameText } from "./frames.ts";

export interface SimFeedOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly host?: string;
  readonly markets?: readonly AssetConfig[];
  readonly intervalMs?: number;
  /** markPrice frames per market every this many ms (default 1000). */
  readonly heartbeatMs?: number;
  /** A market's book frame this old (ms) is sent again, with new sizes, beside its next markPrice (default 5000). */
  readonly bookRefreshMs?: number;
  /** Start with the random walk running (default) or paused (scripted-only). */
  readonly walking?: boolean;
  readonly random?: () => number;
  /** Per market: the quote to start from instead of its level (exact decimal strings, as in a price_update). */
  readonly startQuotes?: ReadonlyMap<string, StartQuote> | undefined;
}

export interface StartQuote {
  readonly bid: string;
  readonly ask: string;
}

export interface SimFeed {
  readonly url: string;
  readonly port: number;
  /** Sets an exact quote and sends it to subscribers at once. Throws on an invalid or crossed quote. */
  setQuote(market: string, bid: string, ask: string): void;
  pauseWalk(): void;
  resumeWalk(): void;
  /** Sends nothing more for `market` (book, scripted quotes, heartbeats) until `resumeMarket`. */
  haltMarket(market: string): void;
  /** Sends `market`'s current quote and its frames again. */
  resumeMarket(market: string): void;
  /** Forgets every connection's subscription to `market`'s bookTicker, telling no one (a subscription lost). */
  loseBookSubscription(market: string): void;
  /** Connections currently open. */
  readonly connections: number;
  /** Per market: whether it started from its start quote or from its level. */
  readonly startedFrom: Readonly<Record<string, "quote" | "level">>;
  stop(): Promise<void>;
}

/** Rough mid prices (USD) in early 2025; markets not listed start at 100. */
const LEVELS: Record<string, number> = {
  ETH_USDC_PERP: 4300,
  BTC_USDC_PERP: 97_000,
  SOL_USDC_PERP: 200,
  ADA_USDC_PERP: 0.9,
};
/** Per-step volatility of the mid, relative (about 1 bp), and the spread, relative (about 2 bp). */
const STEP_VOLATILITY = 0.0001;
const SPREAD = 0.00002;

interface Book {
  readonly asset: AssetConfig;
  bidTicks: number;
  askTicks: number;
  /** A subscriber has been sent its quote: from then on it may walk. */
  shown: boolean;
  /** When its last book frame was sent (ms). */
  sentAtMs: number;
}

/** The quote in ticks, or why it is not a valid quote of `asset` (the checks the engine makes on a price_update). */
export function quoteTicks(
  asset: AssetConfig,
  bid: string,
  ask: string,
): { bidTicks: number; askTicks: number } | string {
  const { market, priceDecimals, maxPriceTicks } = asset;
  const b = parseUnits(bid, priceDecimals, maxPriceTicks);
  const a = parseUnits(ask, priceDecimals, maxPriceTicks);
  if (!b.ok || !a.ok || b.units === 0)
    return `bad price for ${market} (${decimalsWord(priceDecimals)}): ${bid} / ${ask}`;
  if (b.units > a.units) return `crossed quote for ${market}: bid ${bid} > ask ${ask}`;
  return { bidTicks: b.units, askTicks: a.units };
}

/** `{"id":…,"result":"ok"}`, or `{"id":…,"error":{code,message}}`. */
function answer(socket: WebSocket, id: unknown, error?: { code: number; message: string }): void {
  socket.send(JSON.stringify(error === undefined ? { id: id ?? null, result: "ok" } : { id: id ?? null, error }));
}

/** A value from a client's JSON, for an error message: as JSON, cut short; never throws. */
function shown(value: unknown): string {
  return value === undefined ? "nothing" : (JSON.stringify(value) ?? String(typeof value)).slice(0, 60);
}

export async function startSimFeed(options: SimFeedOptions = {}): Promise<SimFeed> {
  const random = options.random ?? Math.random;
  const books = new Map<string, Book>();
  const startedFrom: Record<string, "quote" | "level"> = {};
  for (const asset of options.markets ?? ASSETS) {
    const given = options.startQuotes?.get(asset.market);
    const start = given === undefined ? undefined : quoteTicks(asset, given.bid, given.ask);
    if (start !== undefined && typeof start !== "string") {
      books.set(asset.market, { asset, ...start, shown: false, sentAtMs: 0 });
      startedFrom[asset.market] = "quote";
      continue;
    }
    const mid = Math.round((LEVELS[asset.market] ?? 100) * 10 ** asset.priceDecimals);
    const half = Math.max(1, Math.round((mid * SPREAD) / 2));
    books.set(asset.market, { asset, bidTicks: mid - half, askTicks: mid + half, shown: false, sentAtMs: 0 });
    startedFrom[asset.market] = "level";
  }
  /** Stream names per connection. */
  const subscriptions = new Map<WebSocket, Set<string>>();
  const halted = new Set<string>();
  let nextUpdateId = Date.now() * 1000;

  const frame = (book: Book): string => {
    const nowUs = Date.now() * 1000;
    const { market, priceDecimals, quantityDecimals } = book.asset;
    const size = () => formatUnits(1 + Math.floor(random() * 500 * 10 ** quantityDecimals), quantityDecimals);
    const data = {
      e: "bookTicker",
      E: nowUs,
      T: nowUs,
      s: market,
      a: formatUnits(book.askTicks, priceDecimals),
      A: size(),
      b: formatUnits(book.bidTicks, priceDecimals),
      B: size(),
      u: nextUpdateId++,
    };
    return JSON.stringify({ stream: `bookTicker.${market}`, data });
  };
  const markFrame = (book: Book): string => {
    const nowMs = Date.now();
    const { market, priceDecimals } = book.asset;
    const mark = formatUnits(Math.floor((book.bidTicks + book.askTicks) / 2), priceDecimals);
    const data = {
      e: "markPrice",
      E: nowMs * 1000,
      s: market,
      p: mark,
      f: "0.0000125",
      i: mark,
      n: (Math.floor(nowMs / 3_600_000) + 1) * 3_600_000, // next hourly funding, ms
      T: nowMs * 1000,
    };
    return JSON.stringify({ stream: `markPrice.${market}`, data });
  };
  /** Sends `text` to the subscribers of `stream`; true when there was one. */
  const send = (stream: string, text: string): boolean => {
    let sent = false;
    for (const [socket, streams] of subscriptions) {
      if (streams.has(stream)) {
        socket.send(text);
        sent = true;
      }
    }
    return sent;
  };
  const broadcast = (book: Book) => {
    if (!halted.has(book.asset.market) && send(`bookTicker.${book.asset.market}`, frame(book))) {
      book.shown = true;
      book.sentAtMs = Date.now();
    }
  };

  const step = (book: Book) => {
    const { maxPriceTicks } = book.asset;
    const mid = (book.bidTicks + book.askTicks) / 2;
    // Sum of three uniforms: a cheap bell-shaped step. Floats are fine here: the result is rounded to whole ticks.
    const z = random() + random() + random() - 1.5;
    const next = Math.min(maxPriceTicks * 0.9, Math.max(100, Math.round(mid + mid * STEP_VOLATILITY * 2 * z)));
    const spread = Math.max(1, Math.round(next * SPREAD * (0.5 + random())));
    book.bidTicks = Math.max(1, next - Math.floor(spread / 2));
    book.askTicks = book.bidTicks + spread;
  };

  const bookOf = (market: string): Book => {
    const book = books.get(market);
    if (book === undefined) throw new Error(`unknown market ${market}`);
    return book;
  };
  const setQuote = (market: string, bid: string, ask: string) => {
    const book = bookOf(market);
    const quote = quoteTicks(book.asset, bid, ask);
    if (typeof quote === "string") throw new Error(quote);
    book.bidTicks = quote.bidTicks;
    book.askTicks = quote.askTicks;
    broadcast(book);
  };
  const haltMarket = (market: string) => void halted.add(bookOf(market).asset.market);
  const resumeMarket = (market: string) => {
    const book = bookOf(market);
    if (halted.delete(market)) broadcast(book);
  };
  const loseBookSubscription = (market: string) => {
    const stream = `bookTicker.${bookOf(market).asset.market}`;
    for (const streams of subscriptions.values()) streams.delete(stream);
  };

  const server = new WebSocketServer({ host: options.host ?? "127.0.0.1", port: options.port ?? 0 });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });

  let walkTimer: NodeJS.Timeout | undefined;
  const resumeWalk = () => {
    walkTimer ??= setInterval(() => {
      for (const book of books.values()) {
        // Not every market moves every step, as on an exchange.
        if (!book.shown || random() < 0.3) continue;
        step(book);
        broadcast(book);
      }
    }, options.intervalMs ?? 250);
  };
  const pauseWalk = () => {
    clearInterval(walkTimer);
    walkTimer = undefined;
  };
  if (options.walking ?? true) resumeWalk();
  const bookRefreshMs = options.bookRefreshMs ?? 5_000;
  const heartbeatTimer = setInterval(() => {
    for (const book of books.values()) {
      if (halted.has(book.asset.market)) continue;
      send(`markPrice.${book.asset.market}`, markFrame(book));
      if (book.shown && Date.now() - book.sentAtMs >= bookRefreshMs) broadcast(book);
    }
  }, options.heartbeatMs ?? 1_000);

  /** Answers one client frame. Throws only on a bug: bad requests get an error answer. */
  const serve = (socket: WebSocket, text: string) => {
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      return answer(socket, null, { code: 400, message: "invalid JSON" });
    }
    // Destructuring `null` would throw.
    if (typeof request !== "object" || request === null || Array.isArray(request))
      return answer(socket, null, { code: 400, message: "request is not a JSON object" });
    const { method, params, id } = request as { method?: unknown; params?: unknown; id?: unknown };
    const refuse = (message: string) => answer(socket, id, { code: 400, message });
    if (typeof method !== "string") return refuse(`method must be a string, got ${shown(method)}`);
    if (method === "SUBSCRIBE" || method === "UNSUBSCRIBE") {
      if (!Array.isArray(params)) return refuse(`params must be an array of stream names, got ${shown(params)}`);
      const mine = subscriptions.get(socket);
      for (const stream of params as unknown[]) {
        const [kind, market] = typeof stream === "string" ? stream.split(".", 2) : [];
        const book = kind === "bookTicker" || kind === "markPrice" ? books.get(market ?? "") : undefined;
        if (typeof stream !== "string" || book === undefined || mine === undefined) {
          const name = typeof stream === "string" ? stream.slice(0, 60) : shown(stream);
          answer(socket, id, { code: 4006, message: `Invalid stream: ${name}` });
          continue;
        }
        if (method === "UNSUBSCRIBE") mine.delete(stream);
        else if (!mine.has(stream)) {
          mine.add(stream);
          if (kind === "bookTicker" && !halted.has(book.asset.market)) {
            socket.send(frame(book));
            book.shown = true;
            book.sentAtMs = Date.now();
          }
        }
      }
      return;
    }
    if (method === "PAUSE_WALK") return (pauseWalk(), answer(socket, id));
    if (method === "RESUME_WALK") return (resumeWalk(), answer(socket, id));
    if (
      method !== "SET_QUOTE" &&
      method !== "HALT_MARKET" &&
      method !== "RESUME_MARKET" &&
      method !== "LOSE_BOOK_SUBSCRIPTION"
    )
      return refuse(`unknown method ${method.slice(0, 60)}`);
    if (typeof params !== "object" || params === null || Array.isArray(params))
      return refuse(`params must be an object, got ${shown(params)}`);
    const fields = params as Record<string, unknown>;
    const names = method === "SET_QUOTE" ? ["market", "bid", "ask"] : ["market"];
    const bad = names.find((name) => typeof fields[name] !== "string");
    if (bad !== undefined) return refuse(`params.${bad} must be a string, got ${shown(fields[bad])}`);
    const market = fields.market as string;
    try {
      if (method === "SET_QUOTE") setQuote(market, fields.bid as string, fields.ask as string);
      else if (method === "HALT_MARKET") haltMarket(market);
      else if (method === "LOSE_BOOK_SUBSCRIPTION") loseBookSubscription(market);
      else resumeMarket(market);
    } catch (err) {
      return refuse(err instanceof Error ? err.message : "refused");
    }
    answer(socket, id);
  };

  server.on("connection", (socket) => {
    subscriptions.set(socket, new Set());
    socket.on("close", () => subscriptions.delete(socket));
    socket.on("error", () => socket.terminate());
    socket.on("message", (data) => {
      // An exception here would be thrown inside ws's listener and end the process; a bug answers 500 instead.
      try {
        serve(socket, frameText(data));
      } catch (err) {
        answer(socket, null, {
          code: 500,
          message: `internal error: ${err instanceof Error ? err.message : "unknown"}`,
        });
      }
    });
  });

  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : (options.port ?? 0);
  return {
    url: `ws://${options.host ?? "127.0.0.1"}:${port}`,
    port,
    setQuote,
    pauseWalk,
    resumeWalk,
    haltMarket,
    resumeMarket,
    loseBookSubscription,
    get connections() {
      return subscriptions.size;
    },
    startedFrom,
    stop: async () => {
      pauseWalk();
      clearInterval(heartbeatTimer);
      // ws's close() stops accepting but leaves open connections; end them so the port is free at once.
      for (const socket of subscriptions.keys()) socket.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
