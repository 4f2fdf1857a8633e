// The docs a newcomer reads first: every repository path and section they name exists, and the README stays short.
import { readFileSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { describe, expect, it } from "vitest";
import { fences, shellComments } from "../functions/testing/doc-session.ts";
import { missingPaths, namedPaths } from "./doc-paths.ts";
import { REPO_ROOT as root, repositoryFiles } from "./repository-files.ts";

const files = repositoryFiles();
const docs = files.filter((f) => f === "README.md" || /^docs\/[^/]+\.md$/.test(f) || /^[^/]+\/README\.md$/.test(f));

describe("docs", () => {
  it("covers the README, docs/ and the folder READMEs", () => {
    expect(docs).toContain("README.md");
    expect(docs).toContain("docs/architecture.md");
    expect(docs).toContain("engine/README.md");
  });

  it.each(docs)("%s names only paths that exist in the repository", (doc) => {
    const markdown = readFileSync(join(root, doc), "utf8");
    const missing = missingPaths(markdown, doc, files).map((m) => `${doc}:${m.line} ${m.text} (${m.reason})`);
    expect(missing).toEqual([]);
  });

  // A link to a section (the cookbook's to each route in api.md) breaks silently when the heading is renamed.
  it.each(docs)("%s links only to headings that exist", (doc) => {
    const read = (file: string) => readFileSync(join(root, file), "utf8");
    expect(missingAnchors(read(doc), doc, read)).toEqual([]);
  });

  it("finds a link to a heading that is not there in a known-bad example", () => {
    const pages: Record<string, string> = {
      "docs/a.md": "## `POST /api/v1/trade/create`\n## Setup\n## Setup\n```\n## not a heading\n```",
    };
    const links = "[a](a.md#post-apiv1tradecreate) [b](#setup-1) [c](a.md#nope) [d](#not-a-heading) [e](../README.md)";
    expect(missingAnchors(`${pages["docs/a.md"]}\n${links}`, "docs/a.md", (f) => pages[f]!)).toEqual([
      "a.md#nope",
      "#not-a-heading",
    ]);
  });

  // Pasted into interactive zsh (macOS's shell), a comment runs as a command: its explanation belongs in the prose.
  it.each(docs)("%s holds no comment in a shell block", (doc) => {
    const blocks = fences(readFileSync(join(root, doc), "utf8")).filter((f) => /^(sh|bash|shell|zsh)$/.test(f.lang));
    const comments = blocks.flatMap((f) => shellComments(f.code).map((line) => `${doc}:${f.line} ${line}`));
    expect(comments).toEqual([]);
  });

  it("README.md is at most 12 KB (12,000 bytes)", () => {
    expect(statSync(join(root, "README.md")).size).toBeLessThanOrEqual(12_000);
  });

  // A clone holds the code, its docs and its history, nothing else: a pointer to a design note, an issue tracker or
  // a folder beside the repository leads a newcomer nowhere.
  it("no code, test or doc points outside the repository", () => {
    const text = files.filter((f) => /\.(ts|mjs|js|md|sql|json|example)$|^Dockerfile$|^\.ci\//.test(f));
    const found = text
      .filter((f) => f !== "package-lock.json" && f !== "scripts/docs.test.ts")
      .flatMap((f) => outsideReferences(readFileSync(join(root, f), "utf8")).map((m) => `${f}: ${m}`));
    expect(found).toEqual([]);
  });

  // A line that starts with "+" or "-" inside a paragraph becomes a list item when formatted, and the code spans
  // around it come apart: the text then renders with backticks in it and words run together.
  it.each(docs)("%s closes every code span in the paragraph that opens it", (doc) => {
    expect(unclosedCodeSpans(readFileSync(join(root, doc), "utf8"))).toEqual([]);
  });

  it("finds a code span left open in a known-bad example", () => {
    const bad = ["Stamped (`performance.timeOrigin", "", "- performance.now()` on both sides).", "", "`a` and `b`."];
    expect(unclosedCodeSpans(bad.join("\n"))).toEqual([1, 3]);
    expect(unclosedCodeSpans("```\nodd ` in a fence\n```\n`ok`")).toEqual([]);
  });

  // An operator meets these in a log with nothing else to go on: each needs a line saying what it means.
  it("names every warn or error event the code logs", () => {
    const text = docs.map((doc) => readFileSync(join(root, doc), "utf8")).join("\n");
    const product = files.filter((f) => /\.(ts|mjs)$/.test(f) && !/\.test\.ts$|\/(testing|bench)\//.test(f));
    const events = new Set(product.flatMap((f) => warnOrErrorEvents(readFileSync(join(root, f), "utf8"))));
    expect(events.size).toBeGreaterThan(30);
    expect(events).toContain("<server>_killed");
    expect([...events].filter((event) => !namedIn(text, event)).sort()).toEqual([]);
  });

  it("finds warn and error events in each form the code logs them", () => {
    const source = [
      'log.warn("a_warned", { x }); this.deps.log.error(\n  "b_failed", {});',
      'this.warnBadEntry("warn", "c_dropped", { id }); log.info("not_this"); log.warn(variable);',
      "this.log.error(`${this.name}_died`, {}); log.warn(`${name}_killed`, { pid }); log.info(`${name}_restarted`);",
    ].join("\n");
    expect(warnOrErrorEvents(source)).toEqual([
      "a_warned",
      "b_failed",
      "c_dropped",
      "<server>_died",
      "<server>_killed",
    ]);
    expect(namedIn("`redis_killed` and `a_warned`", "<server>_killed")).toBe(true);
    expect(namedIn("`redis_killed`", "<server>_died")).toBe(false);
    expect(namedIn("`redis_killed`", "a_warned")).toBe(false);
  });

  it("finds such pointers in a known-bad example", () => {
    const bad = "see ../shared/API.md, DESIGN §4 and issue 12; Issue #3 too";
    expect(outsideReferences(bad)).toEqual(["../shared/", "DESIGN §", "issue 12", "Issue #3"]);
    expect(outsideReferences("a zod issue's path; issues.length")).toEqual([]);
  });
});

/** The first line of each paragraph (fenced code blocks aside) with an odd number of backticks. */
function unclosedCodeSpans(markdown: string): number[] {
  const open: number[] = [];
  let fenced = false;
  let start = 0; // the paragraph's first line, 0 between paragraphs
  let ticks = 0;
  const close = () => {
    if (start > 0 && ticks % 2 === 1) open.push(start);
    start = 0;
  };
  markdown.split("\n").forEach((text, i) => {
    if (/^\s*(```|~~~)/.test(text)) {
      close();
      fenced = !fenced;
    } else if (fenced || text.trim() === "") close();
    else {
      if (start === 0) [start, ticks] = [i + 1, 0];
      ticks += text.split("`").length - 1;
    }
  });
  close();
  return open;
}

/**
 * Events logged at warn or error: `log.warn("event", …)`, a throttled logger's `("warn", "event", …)`, and an event
 * named after one of npm start's own servers, `` log.warn(`${name}_killed`, …) ``, as `<server>_killed`.
 */
function warnOrErrorEvents(source: string): string[] {
  const forms = [
    /\.(?:warn|error)\(\s*"([a-z][a-z0-9_]*)"/,
    /\(\s*"(?:warn|error)",\s*"([a-z][a-z0-9_]*)"/,
    /\.(?:warn|error)\(\s*`\$\{(?:this\.)?name\}(_[a-z0-9_]+)`/,
  ];
  const pattern = new RegExp(forms.map((form) => form.source).join("|"), "g");
  return [...source.matchAll(pattern)].map((m) => m[1] ?? m[2] ?? `<server>${m[3]}`);
}

/**
 * The servers npm start runs itself (scripts/start.ts, platform/local-redis.ts, platform/local-postgres.ts): the only
 * names those templates are built with.
 */
const SERVERS = ["redis", "postgres"];

/** Whether `text` names `event` in a code span; `<server>_…`, for at least one of the servers. */
function namedIn(text: string, event: string): boolean {
  const names = event.startsWith("<server>_") ? SERVERS.map((s) => event.replace("<server>", s)) : [event];
  return names.some((name) => text.includes(`\`${name}\``));
}

/** The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as `-`, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const heading of markdown.replace(/^```[\s\S]*?^```/gm, "").matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = heading[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

/** Links in `markdown` (the document `doc`) to a heading of a Markdown document that has no such heading. */
function missingAnchors(markdown: string, doc: string, read: (file: string) => string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
  return [...prose.matchAll(/\]\(([^)\s#]*\.md)?#([^)\s]+)\)/g)]
    .filter((m) => !headingAnchors(read(m[1] === undefined ? doc : posix.join(posix.dirname(doc), m[1]))).has(m[2]!))
    .map((m) => `${m[1] ?? ""}#${m[2]}`);
}

function outsideReferences(text: string): string[] {
  return [...text.matchAll(/\.\.\/shared\/|DESIGN §|\b[Ii]ssues? #?\d+/g)].map((m) => m[0]);
}

describe("path extraction", () => {
  const files = ["README.md", "docs/a.md", "engine/main.ts", "engine/core/apply.ts", "migrations/001_users.sql"];

  it("finds missing paths in links and code spans, and links that leave the repository", () => {
    const markdown = [
      "See [the engine](../engine/main.ts) and [gone](missing.md#part) and [outside](../../shared/API.md).",
      "In `engine/core/aply.ts`, `engine/nope/`, `migrations/*.ts` and `main.ts`.",
      "```",
      "engine/fenced/only.ts is in a code block",
      "```",
    ].join("\n");
    expect(missingPaths(markdown, "docs/a.md", files).map((m) => [m.line, m.text, m.reason])).toEqual([
      [1, "missing.md", "no such file or folder"],
      [1, "../../shared/API.md", "points outside the repository"],
      [2, "engine/core/aply.ts", "no such file or folder"],
      [2, "engine/nope/", "no such file or folder"],
      [2, "migrations/*.ts", "no such file or folder"],
      [2, "main.ts", "no such file or folder"],
    ]);
  });

  it("accepts paths from the document's folder or the root, folders, globs and anchors", () => {
    const markdown = [
      "[engine](../engine/main.ts) [readme](../README.md#layout) [here](#top) [web](https://example.com/x.ts)",
      "`engine/core/`, `engine/core/apply.ts`, `migrations/*.sql`, `a.md`, `README.md`, `dist/engine.mjs`, `.data/logs`",
    ].join("\n");
    expect(missingPaths(markdown, "docs/a.md", files)).toEqual([]);
  });

  it("leaves out what is not a path: routes, keys, packages, placeholders, commands, naming patterns", () => {
    const spans = [
      "/api/v1/docs",
      "engine:{0}:input",
      "@hono/node-server",
      "dist/<name>.mjs",
      "npm run bench:engine",
      "*.int.test.ts",
      "KEY_PREFIX",
      "T<shard>-<n>",
      "--max-semi-space-size=64",
      "application/json",
      "text/html",
    ];
    expect(namedPaths(spans.map((s) => `\`${s}\``).join(" "))).toEqual([]);
  });
});
