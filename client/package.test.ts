/**
 * The client as a frontend outside this repository gets it (`npm run build:client`, platform/build-client.ts): its
 * declarations type-check a consumer in a folder of its own, with no package of this repository reachable, and
 * still refuse what the protocol does not take; the bundle runs in Node against the fake stream server.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { buildClient } from "../platform/build-client.ts";
import type * as Built from "./stream-client.ts";
import { startFakeStreamServer } from "./testing/fake-stream-server.ts";

let outDir: string;
let consumerDir: string;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), "client-build-"));
  consumerDir = await mkdtemp(join(tmpdir(), "client-consumer-"));
  await buildClient(outDir);
}, 120_000);

afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
  await rm(consumerDir, { recursive: true, force: true });
});

/**
 * Each consumer's diagnostics, every consumer a strict module importing the build by its path (one program for
 * all: loading the DOM library's declarations is most of the time).
 */
async function typeCheck(consumers: Record<string, string>): Promise<Record<string, string[]>> {
  const files: Record<string, string> = {};
  for (const [name, source] of Object.entries(consumers)) {
    files[name] = join(consumerDir, `${name}.ts`);
    await writeFile(files[name], source.replaceAll("CLIENT", JSON.stringify(join(outDir, "stream-client.js"))));
  }
  const program = ts.createProgram(Object.values(files), {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: [],
    strict: true,
    noEmit: true,
    // Where the consumer's own packages would be: none of this repository's is reachable from there.
    typeRoots: [join(consumerDir, "node_modules", "@types")],
  });
  const problems: Record<string, string[]> = {};
  for (const name of Object.keys(files)) problems[name] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const name = Object.keys(files).find((n) => files[n] === d.file?.fileName);
    // A problem in the build's declarations themselves counts against every consumer.
    for (const n of name === undefined ? Object.keys(files) : [name])
      problems[n]!.push(`${d.file?.fileName ?? ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  }
  return problems;
}

describe("npm run build:client", () => {
  it("writes one ES module that imports nothing, and its declarations", async () => {
    const bundle = await readFile(join(outDir, "stream-client.js"), "utf8");
    expect(bundle).not.toMatch(/^\s*import\s/m);
    expect(bundle).toMatch(/export\s*{[^}]*StreamClient/);
    expect(await readFile(join(outDir, "stream-client.d.ts"), "utf8")).toContain("export declare class StreamClient");
  });

  it("type-checks a consumer elsewhere, with the frames' fields typed, and refuses what the protocol does not take", async () => {
    const problems = await typeCheck({
      good: `
        import { StreamClient, applyEvent, type OrderView, type PrivateState } from CLIENT;
        const client = new StreamClient({
          apiUrl: "https://api.example.com",
          WebSocket: globalThis.WebSocket,
          subscriptions: [{ channel: "quotes", assets: ["ETH"] }, { channel: "private" }],
        });
        client.on("quote", (quote) => quote.bid.toUpperCase());
        client.on("state", (state: PrivateState) => state.trades.get("T0-1")?.trailingStop?.level);
        client.on("event", (event) => (event.event === "order_updated" ? event.order.status : event.seq));
        const pending = (order: OrderView) => order.status === "pending";
        export { applyEvent, pending };
      `,
      bad: `
        import { StreamClient } from CLIENT;
        const client = new StreamClient({ apiUrl: "x", WebSocket: globalThis.WebSocket, subscriptions: [] });
        client.subscribe({ channel: "quotes", assets: ["XRP"] });
        client.on("quote", (quote) => quote.price);
      `,
    });
    expect(problems.good).toEqual([]);
    const bad = problems.bad!.join("\n");
    expect(bad).toContain(`Type '"XRP"' is not assignable to type '"ETH" | "BTC" | "SOL" | "ADA"'`);
    expect(bad).toContain("Property 'price' does not exist");
  });

  it("runs in Node: the bundle connects, subscribes and applies the private snapshot", async () => {
    const built = (await import(pathToFileURL(join(outDir, "stream-client.js")).href)) as typeof Built;
    const server = await startFakeStreamServer();
    const client = new built.StreamClient({
      apiUrl: server.apiUrl,
      WebSocket,
      token: server.token,
      subscriptions: [{ channel: "private" }],
    });
    try {
      const state = new Promise<Built.PrivateState>((resolve) => client.on("state", resolve));
      client.connect();
      expect((await state).seq).toBe(server.snapshot.seq);
      expect(client.status).toBe("open");
    } finally {
      client.close();
      await server.close();
    }
  });
});
