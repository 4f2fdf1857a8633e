// How a page's blocks become a session and its shown answers are read and compared (functions/readme-session.int.test.ts).
import { describe, expect, it } from "vitest";
import { conformsTo, docSession, jsonValues, LEFT_OUT, shellComments } from "./doc-session.ts";

describe("docSession", () => {
  const page = [
    "## Open",
    "```sh",
    "curl -s $API/a",
    "```",
    "```json",
    '201 {"a": 1}',
    "```",
    "## Setup",
    "```sh",
    "X=1",
    "```",
    "```js",
    "not an answer",
    "```",
  ].join("\n");

  it("pairs each sh block with the json block after it, under its heading and line", () => {
    const session = docSession(page);
    expect(session.blocks).toEqual([
      { heading: "Open", line: 3, code: "curl -s $API/a\n", shown: '201 {"a": 1}\n' },
      { heading: "Setup", line: 10, code: "X=1\n", shown: undefined },
    ]);
    expect(session.problems).toEqual([
      "line 13 (Setup): a ```js block is not run or checked: commands are sh, answers json",
    ]);
  });

  it("names every block the session would pass over: other languages, indented, orphan or second json", () => {
    const session = docSession(
      [
        "```json",
        "200 {}",
        "```",
        "## A",
        "```sh",
        "X=1",
        "```",
        "```json",
        "200 {}",
        "```",
        "```json",
        "500 {}",
        "```",
        "```console",
        "$ curl -s $API/b",
        "```",
        "- a step:",
        "  ```sh",
        "  curl -s $API/c",
        "  ```",
        "~~~bash",
        "curl -s $API/d",
        "~~~",
      ].join("\n"),
    );
    expect(session.blocks.map((block) => block.code)).toEqual(["X=1\n"]);
    expect(session.problems).toEqual([
      "line 2 (): a json block that does not follow an sh block: answers go right after their commands",
      "line 12 (A): a json block that does not follow an sh block: answers go right after their commands",
      "line 15 (A): a ```console block is not run or checked: commands are sh, answers json",
      "line 19 (A): an indented ```sh block is not run or checked: start its fence in column 0",
      "line 22 (A): a ```bash block is not run or checked: commands are sh, answers json",
    ]);
  });

  it("splits what the session printed by block: answers, statuses and anything else", () => {
    const session = docSession(page);
    const stdout = '\n@@block 0\n{"a":1}\n\n@@block 1\nbash: oops\n';
    const stderr = "@@block 0\n201\n@@block 1\n";
    expect(session.answers(stdout, stderr)).toEqual([
      { values: [{ a: 1 }], statuses: [201], noise: [], raw: '\n{"a":1}\n\n' },
      { values: [], statuses: [], noise: ["bash: oops"], raw: "\nbash: oops\n" },
    ]);
  });
});

describe("jsonValues", () => {
  it("reads answers after their status, over indented lines, with a bare … as LEFT_OUT", () => {
    const shown = [
      '200 {"trade": {"id": "T0-1", …},',
      '     "remaining": null, "note": "a … in a string"}',
      '{"type": "welcome", "orders": [{"id": "P0-5", …}, …], "summary": {…}, "at": "…"}',
    ].join("\n");
    expect(jsonValues(shown)).toEqual([
      { status: 200, value: { trade: { id: "T0-1", [LEFT_OUT]: true }, remaining: null, note: "a … in a string" } },
      {
        status: undefined,
        value: {
          type: "welcome",
          orders: [{ id: "P0-5", [LEFT_OUT]: true }, LEFT_OUT],
          summary: { [LEFT_OUT]: true },
          at: "…",
        },
      },
    ]);
  });

  it("throws on a … that is not in an object or array", () => {
    expect(() => jsonValues("200 …")).toThrow();
  });
});

describe("conformsTo", () => {
  const shown = (text: string) => jsonValues(text)[0]!.value;

  it("takes more keys or items only where … stands, and a string by the part before its …", () => {
    const actual = {
      trade: { id: "T0-1", pnl: "-1", at: "2026-12-05T10:00:00.000Z" },
      list: [1, 2],
      note: "Hello there",
    };
    expect(
      conformsTo(shown('{"trade": {"id": "T0-1", "at": "…", …}, "list": [1, …], "note": "Hello…"}'), actual),
    ).toEqual([]);
    expect(conformsTo(shown('{"list": [1, 2], …}'), actual)).toEqual([]);
  });

  it("holds an object or array shown without … to exactly what is shown", () => {
    const actual = { balances: { USD: "1", ADA: "0" }, orders: [{ id: "P0-5" }, { id: "P0-6" }], missing: ["ETH"] };
    expect(conformsTo(shown('{"balances": {"USD": "1"}, "orders": [{"id": "P0-5"}], "missing": []}'), actual)).toEqual([
      "balances.ADA: not shown, and no … in its place",
      'orders: expected an array of 1 items, got [{"id":"P0-5"},{"id":"P0-6"}]',
      'missing: expected an array of 0 items, got ["ETH"]',
    ]);
  });

  it("names each value that differs, and each key that is missing", () => {
    const actual = { trade: { id: "T0-2", leverage: 10 }, list: [], note: "Check your inbox" };
    const doc =
      '{"trade": {"id": "T0-1", "leverage": "10", "stopLoss": null}, "list": [1, …], "note": "If the…", "at": "…"}';
    expect(conformsTo(shown(doc), actual)).toEqual([
      'trade.id: expected "T0-1", got "T0-2"',
      'trade.leverage: expected "10", got 10',
      "trade.stopLoss: missing",
      "list: expected an array of at least 1 items, got []",
      'note: expected a string starting "If the", got "Check your inbox"',
      "at: missing",
    ]);
    expect(conformsTo({ a: 1 }, null)).toEqual(["the answer: expected an object, got null"]);
  });

  it("refuses a … that is not last: the page would mean a cut the matcher cannot read", () => {
    expect(() => conformsTo(shown("[…, 1]"), [1])).toThrow("… is not the array's last item");
    expect(() => conformsTo(shown('{…, "a": 1}'), { a: 1 })).toThrow("… is not the object's last entry");
  });
});

describe("shellComments", () => {
  it("finds a # that starts a word outside quotes, which interactive zsh does not take as a comment", () => {
    const code = [
      "x=1  # note",
      "# a line of its own",
      "f() { echo; }; # after a function",
      "echo \"a # in quotes\" 'b # too' c#d ${#x} $#",
      "node -e '",
      "  // #private, in a quoted script",
      "'",
    ].join("\n");
    expect(shellComments(code)).toEqual(["x=1  # note", "# a line of its own", "f() { echo; }; # after a function"]);
  });
});
