/**
 * Test support: a markdown page's `sh` blocks as one bash session, and each block's answers read back to compare with
 * the `json` block the page shows after it (docs/cookbook.md). A shown block holds JSON values, one a line (longer
 * ones go on over indented lines), each after its HTTP status if it is an HTTP answer, as docs/api.md shows them. A
 * shown object may leave out keys and a shown array its last items; a string that ends in `…` stands for any string.
 * Every other value must be exactly what came.
 */

export interface DocBlock {
  /** The `##` heading the block is under. */
  readonly heading: string;
  /** The block's first line in the page. */
  readonly line: number;
  readonly code: string;
  /** The `json` block after it, before the next `sh` block. */
  readonly shown: string | undefined;
}

export interface BlockAnswers {
  /** Each JSON value the block printed, one a line. */
  readonly values: unknown[];
  /** The HTTP status of each of its curl requests, in order. */
  readonly statuses: number[];
  /** Lines printed that are neither: an error from bash, node or curl. */
  readonly noise: string[];
  readonly raw: string;
}

const MARK = "@@block";

/**
 * The page's `sh` blocks and the bash script that runs them in order, with curl wrapped to end each answer with a
 * newline and write its status to stderr, and a marker before each block on both; `answers` splits what it printed.
 */
export function docSession(markdown: string) {
  const blocks: { heading: string; line: number; code: string; shown: string | undefined }[] = [];
  let heading = "";
  const fence = /^(#{2,3} .*)$|^```(\w*)\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(fence)) {
    if (m[1] !== undefined) heading = m[1].replace(/^#+ /, "");
    else if (m[2] === "sh") {
      const line = markdown.slice(0, m.index).split("\n").length + 1;
      blocks.push({ heading, line, code: m[3]!, shown: undefined });
    } else if (m[2] === "json" && blocks.length > 0 && blocks.at(-1)!.shown === undefined) {
      blocks.at(-1)!.shown = m[3]!;
    }
  }
  const script = [
    "set -euo pipefail",
    String.raw`curl() { command curl -w '\n%{stderr}%{http_code}\n' "$@"; }`,
    ...blocks.map((block, i) => `printf '\\n${MARK} %d\\n' ${i}; printf '${MARK} %d\\n' ${i} >&2\n${block.code}`),
  ].join("\n");
  const segments = (output: string): string[] => {
    const parts = output.split(new RegExp(`^${MARK} (\\d+)$`, "m"));
    const byBlock = blocks.map(() => "");
    for (let i = 1; i < parts.length; i += 2) byBlock[Number(parts[i])] = parts[i + 1] ?? "";
    return byBlock;
  };
  return {
    blocks: blocks as readonly DocBlock[],
    length: blocks.length,
    script,
    answers(stdout: string, stderr: string): BlockAnswers[] {
      const out = segments(stdout);
      const err = segments(stderr);
      return blocks.map((_, i) => {
        const values: unknown[] = [];
        const statuses: number[] = [];
        const noise: string[] = [];
        for (const line of out[i]!.split("\n").filter((l) => l.trim() !== "")) {
          try {
            values.push(JSON.parse(line));
          } catch {
            noise.push(line);
          }
        }
        for (const line of err[i]!.split("\n").filter((l) => l.trim() !== "")) {
          if (/^\d{3}$/.test(line)) statuses.push(Number(line));
          else noise.push(line);
        }
        return { values, statuses, noise, raw: out[i]! };
      });
    },
  };
}

/**
 * The answers of a shown block, each on a line of its own and the lines indented below it, after its status
 * (`201 {"trade": …}`) or not (a WebSocket frame); `…` in place of an object's last keys or an array's last items.
 */
export function jsonValues(text: string): { status: number | undefined; value: unknown }[] {
  const values: { status: number | undefined; value: unknown }[] = [];
  let current: { status: number | undefined; text: string } | undefined;
  const finish = () => {
    if (current === undefined) return;
    const json = current.text.replace(/,\s*…\s*(?=[}\]])/g, "").replace(/(?<=[{[])\s*…\s*(?=[}\]])/g, "");
    values.push({ status: current.status, value: JSON.parse(json) as unknown });
    current = undefined;
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\s/.test(line) && current !== undefined) current.text += `\n${line}`;
    else {
      finish();
      const m = /^(\d{3}) (.*)$/.exec(line);
      current = m === null ? { status: undefined, text: line } : { status: Number(m[1]), text: m[2]! };
    }
  }
  finish();
  return values;
}

/** Where `actual` differs from `shown`, by the rules at the top; empty when it conforms. */
export function conformsTo(shown: unknown, actual: unknown, path = ""): string[] {
  const at = path === "" ? "the answer" : path;
  if (typeof shown === "string" && shown.endsWith("…")) {
    return typeof actual === "string" ? [] : [`${at}: expected a string, got ${JSON.stringify(actual)}`];
  }
  if (Array.isArray(shown)) {
    if (!Array.isArray(actual) || actual.length < shown.length) {
      return [`${at}: expected an array of at least ${shown.length}, got ${JSON.stringify(actual)}`];
    }
    return shown.flatMap((item, i) => conformsTo(item, actual[i], `${path}[${i}]`));
  }
  if (typeof shown === "object" && shown !== null) {
    if (typeof actual !== "object" || actual === null || Array.isArray(actual)) {
      return [`${at}: expected an object, got ${JSON.stringify(actual)}`];
    }
    const fields = actual as Record<string, unknown>;
    return Object.entries(shown).flatMap(([key, value]) => {
      const field = path === "" ? key : `${path}.${key}`;
      return key in fields ? conformsTo(value, fields[key], field) : [`${field}: missing`];
    });
  }
  return shown === actual ? [] : [`${at}: expected ${JSON.stringify(shown)}, got ${JSON.stringify(actual)}`];
}

/**
 * The lines of a shell block that hold a comment: a `#` that starts a word outside quotes. Interactive zsh (macOS's
 * default shell) does not take comments unless `interactivecomments` is set: a pasted `x=1  # note` runs a command
 * named `#`, and a comment after a function's `}` is a parse error.
 */
export function shellComments(code: string): string[] {
  const found = new Set<string>();
  let quote: string | undefined;
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!;
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === "\\") i++;
    else if (c === "'" || c === '"') quote = c;
    else if (c === "#" && (i === 0 || /[\s;&|()]/.test(code[i - 1]!))) {
      const start = code.lastIndexOf("\n", i) + 1;
      const end = code.indexOf("\n", i);
      found.add(code.slice(start, end === -1 ? undefined : end));
    }
  }
  return [...found];
}
