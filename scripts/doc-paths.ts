/**
 * The repository paths a Markdown document names, and which of them do not exist, so a doc cannot silently keep
 * pointing at a file that moved or never was (scripts/docs.test.ts runs it over README.md, docs/ and the folder
 * READMEs).
 *
 * What counts as a path:
 * - a link target (`[text](target)`) that is not a URL, a mail address or a bare anchor, resolved from the
 *   document's folder; it must stay inside the repository;
 * - an inline code span that looks like one: no spaces or placeholders (`<name>`), not an npm scope (`@x/y`), a
 *   media type (`application/json`) or an absolute URL path (`/api/v1/...`), and either containing a `/` or ending
 *   in a file extension the repository uses. It may be written from the document's folder or from the repository
 *   root. `*` is a glob that must match at least one file. A span with `*` but no `/` is a naming pattern
 *   (`*.int.test.ts`), not a path.
 * Fenced code blocks (diagrams, shell sessions) are left out. Paths that exist only at run time (`dist/`,
 * `.data/`, `.sst/`, `node_modules/`) are not checked.
 */
import { posix } from "node:path";

export interface NamedPath {
  /** As written in the document. */
  readonly text: string;
  /** 1-based line in the document. */
  readonly line: number;
  readonly kind: "link" | "code";
}

export interface MissingPath extends NamedPath {
  readonly reason: string;
}

const RUNTIME_ONLY = new Set(["dist", ".data", ".sst", "node_modules"]);
const FILE_EXTENSION = /\.(ts|mjs|cjs|js|json|jsonl|md|sql|yml|yaml|sh|example)$/;
const EXTENSIONLESS_FILES = new Set(["Dockerfile"]);
/** `application/json` and its kind name a media type, not a folder and a file. */
const MEDIA_TYPE = /^(application|text|image|audio|video|multipart|font)\/[\w.+-]+$/;

/** Every path-like reference in `markdown`, fenced code blocks excepted. */
export function namedPaths(markdown: string): NamedPath[] {
  const found: NamedPath[] = [];
  let fenced = false;
  markdown.split("\n").forEach((text, i) => {
    if (/^\s*(```|~~~)/.test(text)) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const line = i + 1;
    const withoutCode = text.replace(/`[^`]*`/g, (span) => " ".repeat(span.length));
    for (const m of withoutCode.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^([a-z][a-z0-9+.-]*:|#)/i.test(target)) continue;
      found.push({ text: target.replace(/#.*$/, ""), line, kind: "link" });
    }
    for (const m of text.matchAll(/`([^`]+)`/g)) {
      const span = m[1]!;
      if (looksLikePath(span)) found.push({ text: span, line, kind: "code" });
    }
  });
  return found;
}

function looksLikePath(span: string): boolean {
  if (/[\s<>:"'=$(){},;|\\]/.test(span) || span.startsWith("@") || span.startsWith("/")) return false;
  if (MEDIA_TYPE.test(span)) return false;
  if (span.includes("/")) return /[A-Za-z]/.test(span);
  if (span.includes("*")) return false;
  return FILE_EXTENSION.test(span) || EXTENSIONLESS_FILES.has(span);
}

/**
 * The named paths of `markdown` (a document at `docPath`, repository-relative) that match nothing among
 * `files` (every repository file, repository-relative, `/`-separated).
 */
export function missingPaths(markdown: string, docPath: string, files: readonly string[]): MissingPath[] {
  const fileSet = new Set(files);
  const dirs = new Set<string>();
  for (const f of files) {
    for (let d = posix.dirname(f); d !== "."; d = posix.dirname(d)) dirs.add(d);
  }
  const docDir = posix.dirname(docPath);
  const missing: MissingPath[] = [];
  for (const named of namedPaths(markdown)) {
    const bases = named.kind === "link" ? [docDir] : [docDir, "."];
    let outside = false;
    let runtimeOnly = false;
    let found = false;
    for (const base of bases) {
      const path = posix.normalize(posix.join(base, named.text)).replace(/\/$/, "");
      if (path === ".." || path.startsWith("../")) {
        outside = true;
        continue;
      }
      if (RUNTIME_ONLY.has(path.split("/")[0]!)) {
        runtimeOnly = true;
        continue;
      }
      if (path === "." || fileSet.has(path) || dirs.has(path) || (path.includes("*") && matchesAny(path, files))) {
        found = true;
        break;
      }
    }
    if (found || runtimeOnly) continue;
    missing.push({
      ...named,
      reason: outside ? "points outside the repository" : "no such file or folder",
    });
  }
  return missing;
}

function matchesAny(glob: string, files: readonly string[]): boolean {
  const pattern = glob
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]*");
  const re = new RegExp(`^${pattern}$`);
  return files.some((f) => re.test(f));
}
