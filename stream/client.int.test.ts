// The typed client of client/ against the real stream server (in-process, real Redis, real sockets): what it
// believes it is subscribed to is what the server holds, through unsubscribes from all quotes, reconnects and a
// subscribe the server refuses; and a reconnect that a ticket makes another user's ends it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import {
  StreamClient,
  type CloseInfo,
  type StreamClientError,
  type Subscription,
  type WelcomeFrame,
} from "../client/stream-client.ts";
import type { FetchLike } from "../client/transport.ts";
import { quoteOutput } from "./testing/quote-output.ts";
import {
  balancesEvent,
  fanOut,
  issueTicket,
  newUserId,
  startTestStream,
  storeEvents,
  type TestStream,
} from "./testing/stream-fixture.ts";

let t: TestStream;
const clients: StreamClient[] = [];

beforeAll(async () => {
  t = await startTestStream({ maxSubscriptions: 3 });
});

afterAll(async () => {
  for (const client of clients) client.close();
  await t.close();
});

type Frame = Record<string, unknown>;
/** The client's sockets, each with the frames it sent and received, so a test can cut one and see what the next sends. */
const sockets: { socket: RecordingSocket; sent: Frame[]; received: Frame[] }[] = [];
/** Called as each socket is made, before the client can have received anything on it. */
let onNewSocket: ((record: { socket: RecordingSocket; sent: Frame[] }) => void) | undefined;

class RecordingSocket extends WebSocket {
  private readonly record: { socket: RecordingSocket; sent: Frame[]; received: Frame[] };
  constructor(url: string) {
    super(url);
    this.record = { socket: this, sent: [], received: [] };
    sockets.push(this.record);
    this.on("message", (data: Buffer) => this.record.received.push(JSON.parse(data.toString("utf8")) as Frame));
    onNewSocket?.(this.record);
  }
  override send(data: string): void {
    this.record.sent.push(JSON.parse(data) as Frame);
    super.send(data);
  }
}

/** The ticket route as the API answers it: a ticket for `userId`, stored as the API stores it. */
const ticketsFor =
  (userId: string): FetchLike =>
  async () => {
    const ticket = await issueTicket(t, { userId });
    const body = { ticket, url: t.url, expiresAt: new Date(Date.now() + 30_000).toISOString() };
    return { status: 201, headers: { get: () => null }, json: () => Promise.resolve(body) };
  };

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function start(subscriptions: Subscription[]) {
  sockets.length = 0;
  onNewSocket = undefined;
  const client = new StreamClient({
    apiUrl: "http://api.invalid",
    WebSocket: RecordingSocket,
    fetch: ticketsFor(newUserId()),
    subscriptions,
    backoff: { initialMs: 10, maxMs: 20 },
  });
  clients.push(client);
  const quotes: string[] = [];
  const errors: StreamClientError[] = [];
  client.on("quote", (quote) => quotes.push(quote.asset));
  client.on("error", (error) => errors.push(error));
  client.connect();
  return { client, quotes, errors };
}

const withoutIds = (frames: Frame[]) => frames.filter((f) => f.op !== "ping").map(({ id: _id, ...frame }) => frame);

/** Every subscribe and unsubscribe socket `i` sent has been answered. */
async function answered(i: number): Promise<void> {
  const { sent, received } = sockets[i]!;
  const answers = () => received.filter((f) => ["subscribed", "unsubscribed", "error"].includes(f.type as string));
  await until("the answers", () => answers().length === sent.filter((f) => f.op !== "ping").length);
}

/** Sends a quote of each asset and waits until the client has a quote of `last` (sent after the others). */
async function quoteEach(quotes: string[], assets: string[], last: string): Promise<string[]> {
  quotes.length = 0;
  for (const asset of [...assets, last]) await fanOut(t, "quote", quoteOutput(asset, "100", new Date().toISOString()));
  await until(`a quote of ${last}`, () => quotes.includes(last));
  return quotes.filter((asset) => asset !== last);
}

describe("the client's subscriptions follow the real server's", () => {
  it("all quotes less three assets is the fourth; after a reconnect it subscribes just that, and unsubscribes it", async () => {
    const { client, quotes } = start([{ channel: "quotes" }]);
    await until("open", () => client.status === "open");
    client.unsubscribe({ channel: "quotes", assets: ["BTC", "SOL", "ADA"] });
    client.subscribe({ channel: "candles", asset: "ETH", interval: "1m" });
    await answered(0);
    expect(await quoteEach(quotes, ["BTC", "SOL", "ADA"], "ETH")).toEqual([]);

    sockets[0]!.socket.terminate();
    await until("the second socket's subscribes", () => withoutIds(sockets[1]?.sent ?? []).length === 2);
    expect(withoutIds(sockets[1]!.sent)).toEqual([
      { op: "subscribe", channel: "candles", asset: "ETH", interval: "1m" },
      { op: "subscribe", channel: "quotes", assets: ["ETH"] },
    ]);
    client.unsubscribe({ channel: "quotes" });
    client.subscribe({ channel: "quotes", assets: ["SOL"] });
    await until("sent", () => withoutIds(sockets[1]!.sent).length === 4);
    await answered(1);
    expect(await quoteEach(quotes, ["ETH", "BTC"], "SOL")).toEqual([]);
    expect(client.subscriptions).toEqual([
      { channel: "quotes", assets: ["SOL"] },
      { channel: "candles", asset: "ETH", interval: "1m" },
    ]);
  });

  it("a subscribe over the limit is refused, reported with the request, and not sent again after a reconnect", async () => {
    const { client, errors } = start([{ channel: "quotes", assets: ["ETH", "BTC"] }]);
    await until("open", () => client.status === "open");
    client.subscribe({ channel: "candles", asset: "BTC", interval: "1m" }); // 3: the limit
    client.subscribe({ channel: "candles", asset: "BTC", interval: "5m" }); // 4: refused
    await until("the refusal", () => errors.length === 1);
    expect(errors[0]).toMatchObject({
      kind: "server",
      code: "TOO_MANY_SUBSCRIPTIONS",
      field: "channel",
      request: { op: "subscribe", subscription: { channel: "candles", asset: "BTC", interval: "5m" } },
    });
    expect(client.subscriptions).toEqual([
      { channel: "quotes", assets: ["ETH", "BTC"] },
      { channel: "candles", asset: "BTC", interval: "1m" },
    ]);

    sockets[0]!.socket.terminate();
    await until("the second socket's subscribes", () => withoutIds(sockets[1]?.sent ?? []).length === 2);
    await answered(1);
    expect(withoutIds(sockets[1]!.sent)).toEqual([
      { op: "subscribe", channel: "candles", asset: "BTC", interval: "1m" },
      { op: "subscribe", channel: "quotes", assets: ["ETH", "BTC"] },
    ]);
    expect(errors).toHaveLength(1);
  });

  it("over the limit after unsubscribing from all quotes, a reconnect restores all of it: private first, quotes last", async () => {
    // Three quote assets left of all quotes count three, the candle and the private channel two more: five at a limit
    // of three, which the server holds because an unsubscribe is never refused.
    const { client, errors, quotes } = start([{ channel: "quotes" }, { channel: "private" }]);
    await until("open", () => client.status === "open");
    client.subscribe({ channel: "candles", asset: "ETH", interval: "1m" });
    client.unsubscribe({ channel: "quotes", assets: ["ADA"] });
    await answered(0);
    await until("the snapshot", () => client.privateState !== undefined); // so that the resume says since 0
    const held = client.subscriptions;

    sockets[0]!.socket.terminate();
    await until("the second socket's subscribes", () => withoutIds(sockets[1]?.sent ?? []).length === 4);
    await answered(1);
    expect(withoutIds(sockets[1]!.sent)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "candles", asset: "ETH", interval: "1m" },
      { op: "subscribe", channel: "quotes" },
      { op: "unsubscribe", channel: "quotes", assets: ["ADA"] },
    ]);
    expect(errors).toEqual([]);
    expect(client.subscriptions).toEqual(held);
    expect(client.unansweredRequests).toBe(0);
    expect(await quoteEach(quotes, ["BTC", "SOL", "ADA"], "ETH")).toEqual(["BTC", "SOL"]);
  });

  it("all quotes less others, cut again before the restore is answered, is restored as such on the third socket", async () => {
    // As above: five subscriptions held at a limit of three. The second socket's restore goes unanswered (cut at once):
    // what it was restoring is still what a server held, so the third restores all quotes less ADA again, not a list
    // of three assets, which the server would count three and refuse.
    const { client, errors, quotes } = start([{ channel: "quotes" }, { channel: "private" }]);
    await until("open", () => client.status === "open");
    client.subscribe({ channel: "candles", asset: "ETH", interval: "1m" });
    client.unsubscribe({ channel: "quotes", assets: ["ADA"] });
    await answered(0);
    await until("the snapshot", () => client.privateState !== undefined);
    const held = client.subscriptions;

    // The second socket is cut on its first frame, the welcome, just after the client handled it (a listener added
    // on open runs after the client's, set as the socket was made): the restore is sent and no answer can come.
    onNewSocket = (record) => {
      onNewSocket = undefined;
      record.socket.once("open", () => record.socket.once("message", () => record.socket.terminate()));
    };
    sockets[0]!.socket.terminate();
    await until("the third socket's subscribes", () => withoutIds(sockets[2]?.sent ?? []).length >= 3);
    expect(sockets[1]!.received.map((frame) => frame.type)).toEqual(["welcome"]);
    await answered(2);
    expect(withoutIds(sockets[1]!.sent)).toEqual(withoutIds(sockets[2]!.sent));
    expect(withoutIds(sockets[2]!.sent)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "candles", asset: "ETH", interval: "1m" },
      { op: "subscribe", channel: "quotes" },
      { op: "unsubscribe", channel: "quotes", assets: ["ADA"] },
    ]);
    expect(errors).toEqual([]);
    expect(client.subscriptions).toEqual(held);
    expect(await quoteEach(quotes, ["BTC", "SOL", "ADA"], "ETH")).toEqual(["BTC", "SOL"]);
  });

  it("a subscribe asked while disconnected goes after what was held, and its refusal takes nothing held away", async () => {
    const { client, errors } = start([{ channel: "private" }, { channel: "quotes", assets: ["ETH", "BTC"] }]);
    await until("open", () => client.status === "open");
    await answered(0);
    await until("the snapshot", () => client.privateState !== undefined); // so that the resume says since 0
    sockets[0]!.socket.terminate();
    await until("reconnecting", () => client.status !== "open");
    client.subscribe({ channel: "quotes", assets: ["SOL"] }); // a fourth: over the limit of three
    await until("the second socket's subscribes", () => withoutIds(sockets[1]?.sent ?? []).length === 3);
    await answered(1);
    expect(withoutIds(sockets[1]!.sent)).toEqual([
      { op: "subscribe", channel: "private", since: 0 },
      { op: "subscribe", channel: "quotes", assets: ["ETH", "BTC"] },
      { op: "subscribe", channel: "quotes", assets: ["SOL"] },
    ]);
    expect(errors).toEqual([expect.objectContaining({ kind: "server", code: "TOO_MANY_SUBSCRIPTIONS" })]);
    expect(client.subscriptions).toEqual([{ channel: "quotes", assets: ["ETH", "BTC"] }, { channel: "private" }]);
  });
});

describe("the client's user", () => {
  it("a reconnect whose ticket is another user's (the cookie replaced) ends the client before anything of theirs", async () => {
    const a = newUserId();
    const b = newUserId();
    await storeEvents(
      t,
      [1, 2, 3].map((seq) => balancesEvent(a, seq, `10${seq}`)),
    );
    await storeEvents(
      t,
      [1, 2, 3, 4, 5, 6].map((seq) => balancesEvent(b, seq, `${seq}`)),
    );
    let signedIn = a; // whom the browser's session cookie is for, as the ticket route reads it
    sockets.length = 0;
    const client = new StreamClient({
      apiUrl: "http://api.invalid",
      WebSocket: RecordingSocket,
      fetch: async (url, init) => ticketsFor(signedIn)(url, init),
      subscriptions: [{ channel: "private" }, { channel: "quotes", assets: ["ETH"] }],
      backoff: { initialMs: 10, maxMs: 20 },
    });
    clients.push(client);
    const opens: WelcomeFrame[] = [];
    const closes: CloseInfo[] = [];
    const seen: string[] = [];
    client.on("open", (welcome) => opens.push(welcome));
    client.on("close", (info) => closes.push(info));
    client.on("state", (state, cause) => seen.push(`state ${cause} ${state.seq}`));
    client.on("event", (event) => seen.push(`event ${event.seq}`));
    client.connect();
    await until("A's snapshot", () => client.privateState?.seq === 3);
    await answered(0);

    signedIn = b; // B signed in in another tab; A's socket is cut before any notice could reach it
    const before = [...seen];
    sockets[0]!.socket.terminate();
    await until("the end, or B's events", () => client.status === "ended" || client.privateState?.seq !== 3);
    expect(client.status).toBe("ended");
    expect(closes.at(-1)).toEqual({
      code: 4401,
      reason: "signed in as another user",
      reconnectInMs: null,
      sessionEnded: true,
    });
    expect(opens.map((welcome) => welcome.userId)).toEqual([a]);
    expect(sockets[1]!.received[0]).toMatchObject({ type: "welcome", userId: b });
    expect(sockets[1]!.sent).toEqual([]); // no private subscribe with A's seq, nor anything else
    expect(client.privateState).toMatchObject({ seq: 3, balances: { USD: "103" } });
    expect(seen).toEqual(before);
    await new Promise((resolve) => setTimeout(resolve, 100)); // five backoffs' worth: no reconnect follows
    expect(sockets).toHaveLength(2);
  });
});
