/**
 * The typed client of client/ where a frontend runs it: bundled for the browser and loaded by a page in Debian's
 * Chromium, with the browser's own WebSocket, fetch and cookie jar, against the real processes (API, engine, worker,
 * poller and stream on real Redis and Postgres). The page is served from its own origin, listed in CORS_ORIGINS: the
 * API's host on another port, so another origin but the same site (a site is the scheme and the registrable domain,
 * or the IP address; ports do not count), as a deployed frontend on app.example.com is to the API on api.example.com
 * (API_DOMAIN, docs/operations.md). Being the same site is what makes the browser send the SameSite=Lax session
 * cookie with the page's requests. A second origin on the API's host, not listed, stands for a page the API does not
 * trust; a third, on localhost, listed, is another site, as any frontend is to API Gateway's own host.
 *
 * 1. Sign-in is the magic link opened in the browser: the session is an httpOnly cookie the page cannot read. The
 *    client gets its tickets with that cookie (cross-origin, with credentials), follows quotes and its own private
 *    events, and an order the page places shows up as events with contiguous seqs and a state equal to the REST
 *    API's. Logging out closes the socket with 4401 and the client stops.
 * 2. A page of another origin gets no ticket with the same cookie, and the upgrade refuses its socket even with a
 *    valid ticket, while the allowed origin's socket with another such ticket opens.
 * 3. A page on another site gets no session even though CORS_ORIGINS lists it: the browser does not send the cookie,
 *    so its ticket request is 401.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createProcessStack, type ProcessStack } from "../functions/testing/process-stack.ts";
import { chromiumInstalled, launchChromium } from "../platform/testing/chromium.ts";
import { until } from "../platform/testing/processes.ts";
import { browserBundle } from "./testing/browser-bundle.ts";
import type { Component } from "../platform/components.ts";

const haveChromium = chromiumInstalled("client/browser.e2e.test");

/** A page that loads the client bundle as a module and leaves its class on `window`. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>stream client</title>
<script type="module">import { StreamClient } from "/client.js"; window.StreamClient = StreamClient;</script>`;

interface PageServer {
  readonly origin: string;
  close(): Promise<void>;
}

/** A page server on 127.0.0.1, addressed as `host` (localhost reaches it too, and is another site). */
async function servePage(bundle: string, host = "127.0.0.1"): Promise<PageServer> {
  const server: Server = createServer((req, res) => {
    const [type, body] = req.url === "/client.js" ? ["text/javascript", bundle] : ["text/html", PAGE];
    res.writeHead(200, { "content-type": `${type}; charset=utf-8` }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://${host}:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** What the page's client saw, kept on `window.seen` (plain data, so the test can read it; `globalThis` here). */
interface Seen {
  quotes: { asset: string; bid: string }[];
  events: { seq: number; event: string; tradeId?: string }[];
  state: { seq: number; balances: unknown; trades: string[] } | null;
  /** Each summary frame's `seq` and `balance` (cash plus the margins in use). */
  summaries: { seq: number; balance: string }[];
  closes: { code: number; sessionEnded: boolean }[];
  errors: unknown[];
  status: string;
}

describe.skipIf(!haveChromium)("the stream client in Chromium", () => {
  let stack: ProcessStack;
  let allowed: PageServer;
  let foreign: PageServer;
  let crossSite: PageServer;
  let browser: Browser;
  let context: BrowserContext;
  let apiUrl: string;
  const problems: string[] = [];

  beforeAll(async () => {
    const bundle = await browserBundle();
    [allowed, foreign, crossSite] = await Promise.all([
      servePage(bundle),
      servePage(bundle),
      servePage(bundle, "localhost"),
    ]);
    stack = await createProcessStack(`test:browser-client:${randomUUID()}:`, {
      CORS_ORIGINS: `${allowed.origin},${crossSite.origin}`,
    });
    await stack.start("api");
    const others: Component["name"][] = ["engine", "worker", "poller", "stream"];
    await Promise.all(others.map((name) => stack.start(name)));
    apiUrl = `http://127.0.0.1:${stack.port}`;
    await stack.quote("ETH_USDC_PERP", "4000", "4001");
    browser = await launchChromium();
    context = await browser.newContext();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all([allowed?.close(), foreign?.close(), crossSite?.close()]);
    await stack?.stop();
  }, 60_000);

  /** A page of `origin` with the client loaded; console errors and uncaught exceptions go to `problems`. */
  async function open(origin: string): Promise<Page> {
    const page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`${origin} console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`${origin} page error: ${e.message}`));
    await page.goto(`${origin}/`);
    await page.waitForFunction(() => "StreamClient" in globalThis);
    return page;
  }

  /** Opens the magic link in the browser; the session cookie it set (httpOnly: only the browser holds it). */
  async function signInInBrowser(email: string): Promise<string> {
    const page = await context.newPage();
    const answer = await page.goto(await stack.magicLink(email));
    expect(answer?.status()).toBe(200);
    await page.close();
    const cookie = (await context.cookies(apiUrl)).find((c) => c.name === "session");
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Lax" });
    return cookie!.value;
  }

  const seen = (page: Page) => page.evaluate(() => (globalThis as unknown as { seen: Seen }).seen);

  it("signs in by its magic link; follows quotes and its own events on the session cookie; logout closes it", async () => {
    const token = await signInInBrowser("carol@example.com");
    const page = await open(allowed.origin);
    await page.evaluate((api) => {
      type Client = {
        on(event: string, listener: (...args: never[]) => void): void;
        connect(): void;
        status: string;
      };
      const w = globalThis as unknown as {
        StreamClient: new (options: object) => Client;
        seen: Seen;
      };
      const seen: Seen = { quotes: [], events: [], state: null, summaries: [], closes: [], errors: [], status: "idle" };
      w.seen = seen;
      // No token: the ticket request carries the session cookie, as a frontend's would.
      const client = new w.StreamClient({
        apiUrl: api,
        WebSocket,
        subscriptions: [{ channel: "quotes" }, { channel: "private" }],
      });
      client.on("quote", (q: { asset: string; bid: string }) => seen.quotes.push({ asset: q.asset, bid: q.bid }));
      client.on("event", (e: { seq: number; event: string; trade?: { id: string } }) =>
        seen.events.push({ seq: e.seq, event: e.event, ...(e.trade ? { tradeId: e.trade.id } : {}) }),
      );
      type State = { seq: number; balances: unknown; trades: Map<string, unknown>; summary: { balance: string } };
      client.on("state", (s: State, cause: string) => {
        seen.state = { seq: s.seq, balances: s.balances, trades: [...s.trades.keys()] };
        if (cause === "summary") seen.summaries.push({ seq: s.seq, balance: s.summary.balance });
      });
      client.on("close", (info: { code: number; sessionEnded: boolean }) => {
        seen.closes.push({ code: info.code, sessionEnded: info.sessionEnded });
        seen.status = client.status;
      });
      client.on("error", (e: unknown) => seen.errors.push(e));
      client.connect();
    }, apiUrl);
    await page.waitForFunction(() => (globalThis as unknown as { seen: Seen }).seen.state !== null);
    const snapshotSeq = (await seen(page)).state!.seq;

    // The page places an order the way a frontend does: cross-origin, with the cookie.
    const placed = await page.evaluate(async (api) => {
      const res = await fetch(`${api}/api/v1/trade/create`, {
        method: "POST",
        credentials: "include",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ asset: "ETH", type: "long", margin: "100", leverage: 2 }),
      });
      return { status: res.status, body: (await res.json()) as { trade?: { id: string } } };
    }, apiUrl);
    expect(placed.status).toBe(201);
    const tradeId = placed.body.trade!.id;
    await page.waitForFunction(
      (id) => (globalThis as unknown as { seen: Seen }).seen.state?.trades.includes(id) === true,
      tradeId,
    );
    const balances = await stack.http("GET", "/api/v1/account/balance", { token });
    await until(
      async () =>
        JSON.stringify((await seen(page)).state!.balances) === JSON.stringify(balances.body.balances) || undefined,
      10_000,
      "the client's balances to equal the REST API's",
    );
    const { events, summaries } = await seen(page);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => snapshotSeq + 1 + i));
    expect(events.filter((e) => e.event === "trade_opened").map((e) => e.tradeId)).toEqual([tradeId]);
    // Opening moves money from cash to margin: no summary, not even one between the open and its payment, shows
    // another balance than the REST API's.
    const rest = await stack.http<{ summary: { balance: string } }>("GET", "/api/v1/account/summary", { token });
    expect(summaries.length).toBeGreaterThan(0);
    expect(new Set(summaries.map((x) => x.balance))).toEqual(new Set([rest.body.summary.balance]));

    await stack.quote("ETH_USDC_PERP", "4010", "4011");
    await page.waitForFunction(() =>
      (globalThis as unknown as { seen: Seen }).seen.quotes.some((q) => q.asset === "ETH" && q.bid === "4010"),
    );

    const loggedOut = await page.evaluate(async (api) => {
      const res = await fetch(`${api}/api/v1/auth/logout`, { method: "DELETE", credentials: "include" });
      return res.status;
    }, apiUrl);
    expect(loggedOut).toBe(200);
    await page.waitForFunction(() => (globalThis as unknown as { seen: Seen }).seen.closes.length > 0, undefined, {
      timeout: 5_000,
    });
    const after = await seen(page);
    expect(after.closes).toEqual([{ code: 4401, sessionEnded: true }]);
    expect(after.status).toBe("ended");
    expect(after.errors).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });

  it("from an origin not allowed: no ticket with the cookie, and the socket refused even with a valid ticket", async () => {
    const token = await signInInBrowser("dave@example.com");
    const page = await open(foreign.origin);
    const tried = await page.evaluate(async (api) => {
      try {
        const res = await fetch(`${api}/api/v1/stream/ticket`, { method: "POST", credentials: "include" });
        return `answered ${res.status}`;
      } catch (error) {
        return `refused: ${(error as Error).message}`;
      }
    }, apiUrl);
    expect(tried).toMatch(/^refused/);

    /** Opens a socket with a fresh ticket from `page`: its first frame's type, or how it closed. */
    const connectFrom = async (from: Page) => {
      const ticket = await stack.http<{ ticket: string; url: string }>("POST", "/api/v1/stream/ticket", { token });
      expect(ticket.status).toBe(201);
      return from.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const socket = new WebSocket(url);
            socket.onmessage = (m) => {
              resolve(`frame ${(JSON.parse(String(m.data)) as { type: string }).type}`);
              socket.close();
            };
            socket.onclose = (e) => resolve(`closed ${e.code}`);
          }),
        `${ticket.body.url}?ticket=${ticket.body.ticket}`,
      );
    };
    expect(await connectFrom(page)).toBe("closed 1006");
    // The same from the allowed origin opens: it was the Origin that was refused.
    const allowedPage = await open(allowed.origin);
    expect(await connectFrom(allowedPage)).toBe("frame welcome");
    // The browser reports the refused fetch and socket on the console; nothing else may appear.
    expect(problems.filter((p) => !p.startsWith(`${foreign.origin} console:`))).toEqual([]);
    await Promise.all([page.close(), allowedPage.close()]);
  });

  it("from another site, even one CORS_ORIGINS lists: the browser sends no cookie, so no ticket", async () => {
    await signInInBrowser("erin@example.com");
    const earlier = problems.length;
    const ticketFrom = async (origin: string) => {
      const page = await open(origin);
      const answer = await page.evaluate(async (api) => {
        const res = await fetch(`${api}/api/v1/stream/ticket`, { method: "POST", credentials: "include" });
        return { status: res.status, body: (await res.json()) as { error?: { code: string } } };
      }, apiUrl);
      await page.close();
      return answer;
    };
    // The same request from the same-site page, with the same browser's cookie, gets its ticket.
    expect((await ticketFrom(allowed.origin)).status).toBe(201);
    // CORS lets the cross-site page read the answer: it is the missing cookie that makes it 401.
    const crossSiteAnswer = await ticketFrom(crossSite.origin);
    expect(crossSiteAnswer.status).toBe(401);
    expect(crossSiteAnswer.body.error?.code).toBe("UNAUTHENTICATED");
    // The browser reports the 401 on the console; nothing else may appear.
    expect(problems.slice(earlier).filter((p) => !p.startsWith(`${crossSite.origin} console:`))).toEqual([]);
  });
});
