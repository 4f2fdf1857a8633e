/**
 * Test support: a markdown page's `sh` blocks as one bash session, and each block's answers read back to compare with
 * the `json` block the page shows after it (docs/cookbook.md). A shown block holds JSON values, one a line (longer
 * ones go on over indented lines), each after its HTTP status if it is an HTTP answer, as docs/api.md shows them.
 * `…` marks a cut, only where the page puts it: as an object's last entry, keys left out; as an array's last item,
 * items left out; at a string's end, the rest of the string (`"…"` is any string). Everything else must be exactly
 * what came: an object shown without `…` has just the keys shown, an array just the items shown.
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

/** A fenced block of a markdown page: its language, its indent, its first line's number and its text. */
export interface Fence {
  readonly heading: string;
  readonly line: number;
  readonly indent: string;
  readonly lang: string;
  readonly code: string;
}

/** Every fenced block of a page (``` or ~~~, at any indent), under the `##`/`###` heading before it. */
export function fences(markdown: string): Fence[] {
  const found: Fence[] = [];
  const lines = markdown.split("\n");
  let heading = "";
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]!);
    if (open === null) {
      const title = /^#{2,3} (.*)$/.exec(lines[i]!);
      if (title !== null) heading = title[1]!;
      continue;
    }
    const [, indent, marker, lang] = open;
    const close = new RegExp(`^\\s*${marker![0]}{${marker!.length},}\\s*$`);
    let end = i + 1;
    while (end < lines.length && !close.test(lines[end]!)) end++;
    const code = lines.slice(i + 1, end).map((l) => l.slice(Math.min(indent!.length, /^\s*/.exec(l)![0].length)));
    found.push({ heading, line: i + 2, indent: indent!, lang: lang!, code: code.map((l) => `${l}\n`).join("") });
    i = end;
  }
  return found;
}

/**
 * The page's `sh` blocks and the bash script that runs them in order, with curl wrapped to end each answer with a
 * newline and write its status to stderr, and a marker before each block on both; `answers` splits what it printed.
 * `problems` names every block the session would pass over: a fence that is neither `sh` (run) nor `json` (the
 * answers of the `sh` block just before it, with no other fence between), so a `bash`, `console` or `text` block, a
 * second or orphan `json` block, and an indented block (in a list item), whatever its language.
 */
export function docSession(markdown: string) {
  const blocks: { heading: string; line: number; code: string; shown: string | undefined }[] = [];
  const problems: string[] = [];
  let previous: Fence | undefined;
  for (const fence of fences(markdown)) {
    const where = `line ${fence.line} (${fence.heading})`;
    if (fence.indent !== "") {
      problems.push(
        `${where}: an indented \`\`\`${fence.lang} block is not run or checked: start its fence in column 0`,
      );
    } else if (fence.lang === "sh") {
      blocks.push({ heading: fence.heading, line: fence.line, code: fence.code, shown: undefined });
    } else if (fence.lang === "json" && previous?.lang === "sh" && previous.indent === "") {
      blocks.at(-1)!.shown = fence.code;
    } else if (fence.lang === "json") {
      problems.push(`${where}: a json block that does not follow an sh block: answers go right after their commands`);
    } else {
      problems.push(`${where}: a \`\`\`${fence.lang} block is not run or checked: commands are sh, answers json`);
    }
    previous = fence;
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
    problems: problems as readonly string[],
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

/** What a bare `…` (outside a string) reads as: an object's last key, or an array's last item. */
export const LEFT_OUT = "\u0000left out";

/**
 * The answers of a shown block, each on a line of its own and the lines indented below it, after its status
 * (`201 {"trade": …}`) or not (a WebSocket frame). A bare `…` as an object's last entry or an array's last item reads
 * as LEFT_OUT (a key `LEFT_OUT: true`, an item `LEFT_OUT`); anywhere else it is not JSON, and this throws.
 */
export function jsonValues(text: string): { status: number | undefined; value: unknown }[] {
  const values: { status: number | undefined; value: unknown }[] = [];
  let current: { status: number | undefined; text: string } | undefined;
  const finish = () => {
    if (current === undefined) return;
    values.push({ status: current.status, value: JSON.parse(markLeftOut(current.text)) as unknown });
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

/** `text` with each bare `…` in an object or array as LEFT_OUT, in JSON. */
function markLeftOut(text: string): string {
  const open: string[] = [];
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === "\\") out += c + (text[++i] ?? "");
      else {
        if (c === '"') inString = false;
        out += c;
      }
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") open.push(c);
    else if (c === "}" || c === "]") open.pop();
    else if (c === "…" && open.length > 0) {
      out += open.at(-1) === "{" ? `${JSON.stringify(LEFT_OUT)}: true` : JSON.stringify(LEFT_OUT);
      continue;
    }
    out += c;
  }
  return out;
}

/** Where `actual` differs from `shown`, by the rules at the top; empty when it conforms. */
export function conformsTo(shown: unknown, actual: unknown, path = ""): string[] {
  const at = path === "" ? "the answer" : path;
  if (typeof shown === "string" && shown.endsWith("…")) {
    const prefix = shown.slice(0, -1);
    return typeof actual === "string" && actual.startsWith(prefix)
      ? []
      : [`${at}: expected a string starting ${JSON.stringify(prefix)}, got ${JSON.stringify(actual)}`];
  }
  if (Array.isArray(shown)) {
    const cut = shown.indexOf(LEFT_OUT);
    if (cut !== -1 && cut !== shown.length - 1) throw new Error(`${at}: … is not the array's last item`);
    const items = cut === -1 ? shown : shown.slice(0, -1);
    if (!Array.isArray(actual) || (cut === -1 ? actual.length !== items.length : actual.length < items.length)) {
      const expected = cut === -1 ? `${items.length} items` : `at least ${items.length} items`;
      return [`${at}: expected an array of ${expected}, got ${JSON.stringify(actual)}`];
    }
    return items.flatMap((item, i) => conformsTo(item, actual[i], `${path}[${i}]`));
  }
  if (typeof shown === "object" && shown !== null) {
    if (typeof actual !== "object" || actual === null || Array.isArray(actual)) {
      return [`${at}: expected an object, got ${JSON.stringify(actual)}`];
    }
    const keys = Object.keys(shown);
    const cut = keys.indexOf(LEFT_OUT);
    if (cut !== -1 && cut !== keys.length - 1) throw new Error(`${at}: … is not the object's last entry`);
    const fields = actual as Record<string, unknown>;
    const field = (key: string) => (path === "" ? key : `${path}.${key}`);
    const unshown = cut === -1 ? Object.keys(fields).filter((key) => !keys.includes(key)) : [];
    return [
      ...Object.entries(shown)
        .filter(([key]) => key !== LEFT_OUT)
        .flatMap(([key, value]) =>
          key in fields ? conformsTo(value, fields[key], field(key)) : [`${field(key)}: missing`],
        ),
      ...unshown.map((key) => `${field(key)}: not shown, and no … in its place`),
    ];
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
