/**
 * The API reference page in a real browser: Debian's Chromium driven by playwright-core, against a real API on a
 * free port (real Redis, Postgres, engine and worker). The page must render under the app's Content-Security-
 * Policy with nothing from another origin, list every operation of the OpenAPI document, and its "Try it out" must
 * reach this API. Skipped, saying so, where no Chromium is installed; under CI (CI=true) that is a failure instead,
 * since .ci/run installs it.
 */
import { serve, type ServerType } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHROMIUM, chromiumInstalled, launchChromium } from "../platform/testing/chromium.ts";
import { createApp } from "./app.ts";
import type { ApiEnv } from "./context.ts";
import { startApiStack, type ApiStack } from "./testing/api-stack.ts";
import { operationsOf } from "./testing/document.ts";
import type { Hono } from "hono";

const haveChromium = chromiumInstalled("docs-page.e2e.test");

// CI must run the page, not skip it: .ci/run installs Chromium, so a missing one there is a broken CI setup.
it("has Chromium to run with when under CI", () => {
  expect(haveChromium || process.env.CI !== "true", `no Chromium at ${CHROMIUM}: .ci/run should install it`).toBe(true);
});

describe.skipIf(!haveChromium)("the API reference page at /api/v1/docs", () => {
  let stack: ApiStack;
  let server: ServerType;
  let base: string;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    // The port comes first: the document's server URL (where "Try it out" sends requests) is the API's APP_URL.
    const target: { app?: Hono<ApiEnv> } = {};
    server = serve({ fetch: (req) => target.app!.fetch(req), port: 0, hostname: "127.0.0.1" });
    await new Promise<void>((r) => server.once("listening", () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    stack = await startApiStack({ settings: { appUrl: base } });
    target.app = stack.app;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await stack?.close();
  });

  it("renders every operation of the document, with nothing loaded from elsewhere and no CSP violation", async () => {
    const document = (await (await fetch(`${base}/api/v1/openapi.json`)).json()) as Record<string, unknown>;
    const expected = operationsOf(document).sort();
    expect(expected.length).toBeGreaterThan(10);

    await page.goto(`${base}/api/v1/docs`);
    await page.locator(".opblock").first().waitFor({ timeout: 30_000 });
    const shown: string[] = [];
    for (const block of await page.locator(".opblock").all()) {
      const method = (await block.locator(".opblock-summary-method").textContent()) ?? "";
      const path = (await block.locator(".opblock-summary-path").getAttribute("data-path")) ?? "";
      shown.push(`${method.trim().toUpperCase()} ${path}`);
    }
    expect(shown.sort()).toEqual(expected);
    await expect(page.title()).resolves.toBe("Paper broker API reference");
    expect(await page.locator(".info .title").textContent()).toContain("Paper broker API");

    expect(requests.filter((url) => !url.startsWith(base))).toEqual([]);
    expect(problems).toEqual([]);
    if (process.env.DOCS_SCREENSHOT !== undefined) await page.screenshot({ path: process.env.DOCS_SCREENSHOT });
  });

  it("shows an operation's request body example and its error codes", async () => {
    const create = page.locator("#operations-Trading-openTrade");
    await create.locator(".opblock-summary").click();
    const body = create.locator(".opblock-section-request-body");
    await expect(body.textContent()).resolves.toContain('"leverage": 10');
    const responses = create.locator(".responses-table").first();
    await expect(responses.textContent()).resolves.toContain("INSUFFICIENT_BALANCE");
    await expect(responses.textContent()).resolves.toContain("IDEMPOTENCY_CONFLICT");
    if (process.env.DOCS_SCREENSHOT !== undefined)
      await create.screenshot({ path: process.env.DOCS_SCREENSHOT.replace(/\.png$/, "-operation.png") });
  });

  it('"Try it out" on GET /health calls this API and shows its 200 answer', async () => {
    const health = page.locator("#operations-System-getHealth");
    await health.locator(".opblock-summary").click();
    await health.getByRole("button", { name: "Try it out" }).click();
    const called = page.waitForResponse((r) => r.url() === `${base}/health`);
    await health.getByRole("button", { name: "Execute" }).click();
    expect((await called).status()).toBe(200);
    const live = health.locator(".live-responses-table");
    const row = live.locator("tbody tr.response").first();
    await row.waitFor();
    await expect(row.locator(".response-col_status").textContent()).resolves.toContain("200");
    await expect(row.locator(".response-col_description").textContent()).resolves.toContain('"status": "ok"');
    if (process.env.DOCS_SCREENSHOT !== undefined)
      await page.screenshot({ path: process.env.DOCS_SCREENSHOT.replace(/\.png$/, "-try.png"), fullPage: false });
  });

  it('served on localhost (APP_URL) and opened at 127.0.0.1, "Try it out" asks for a sign-in link', async () => {
    // npm start's setup: APP_URL on localhost, the dev mailbox on, and the page opened at the 127.0.0.1 address.
    // The port comes first, as above: APP_URL names it.
    const localTarget: { app?: Hono<ApiEnv> } = {};
    const local = serve({ fetch: (req) => localTarget.app!.fetch(req), port: 0, hostname: "127.0.0.1" });
    await new Promise<void>((r) => local.once("listening", () => r()));
    const port = (local.address() as AddressInfo).port;
    localTarget.app = createApp({
      ...stack.deps,
      settings: { ...stack.deps.settings, appUrl: `http://localhost:${port}` },
    });
    const at = `http://127.0.0.1:${port}`;
    const localPage = await browser.newPage();
    try {
      await localPage.goto(`${at}/api/v1/docs`);
      const signIn = localPage.locator("#operations-Auth-requestSignInLink");
      await signIn.locator(".opblock-summary").click();
      await signIn.getByRole("button", { name: "Try it out" }).click();
      const email = `docs-${crypto.randomUUID()}@example.com`;
      await signIn.locator(".body-param textarea").fill(JSON.stringify({ email }));
      const called = localPage.waitForResponse((r) => r.url() === `${at}/api/v1/auth`);
      await signIn.getByRole("button", { name: "Execute" }).click();
      expect((await called).status()).toBe(200);
      expect((await stack.deps.devMailbox!.list(20)).map((m) => m.to)).toContain(email);
    } finally {
      await localPage.close();
      await new Promise<void>((r) => local.close(() => r()));
    }
  });
});
