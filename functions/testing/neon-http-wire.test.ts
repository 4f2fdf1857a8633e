// The Neon SQL-over-HTTP wire rules the local peer follows, on plain data.
import { describe, expect, it } from "vitest";
import { batchHeaders, beginStatement, connectionUrl, parsePayload, paramText, Refusal } from "./neon-http-wire.ts";

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof Refusal ? { status: err.status, message: err.message } : err;
  }
  throw new Error("no refusal");
};

describe("parameters as Postgres text, as Neon converts JSON", () => {
  it("keeps strings, writes numbers, booleans and objects as their JSON, null as NULL", () => {
    expect(paramText("héllo")).toBe("héllo");
    expect(paramText(12.5)).toBe("12.5");
    expect(paramText(true)).toBe("true");
    expect(paramText({ a: [1] })).toBe('{"a":[1]}');
    expect(paramText(null)).toBeNull();
  });

  it("writes an array as an array literal: quoted, escaped strings, NULL, nested braces", () => {
    expect(paramText([1, 'x"y', null, [2, 3]])).toBe('{1,"x\\"y",NULL,{2,3}}');
    // An object inside an array goes in as its JSON text, quoted as a string element
    expect(paramText([{ k: "v" }])).toBe('{"{\\"k\\":\\"v\\"}"}');
  });
});

describe("the payload", () => {
  it("reads one query or a batch, params optional", () => {
    expect(parsePayload(Buffer.from('{"query":"SELECT $1","params":[1]}'))).toEqual({
      query: "SELECT $1",
      params: ["1"],
      arrayMode: undefined,
    });
    expect(
      parsePayload(Buffer.from('{"queries":[{"query":"SELECT 1"},{"query":"SELECT 2","arrayMode":true}]}')),
    ).toEqual([
      { query: "SELECT 1", params: [], arrayMode: undefined },
      { query: "SELECT 2", params: [], arrayMode: true },
    ]);
  });

  it("refuses a body that is not JSON or matches neither shape, with 400", () => {
    expect(refusal(() => parsePayload(Buffer.from("SELECT 1")))).toMatchObject({
      status: 400,
      message: expect.stringMatching(/^could not parse the HTTP request body: /) as unknown,
    });
    expect(refusal(() => parsePayload(Buffer.from('{"sql":"SELECT 1"}')))).toEqual({
      status: 400,
      message: "could not parse the HTTP request body: data did not match any variant of untagged enum Payload",
    });
  });
});

describe("the connection string header", () => {
  it("accepts a Neon connection string with user, password, host name and database", () => {
    expect(connectionUrl("postgresql://u:p@ep-a-1.us-east-2.aws.neon.tech/db?sslmode=require").hostname).toBe(
      "ep-a-1.us-east-2.aws.neon.tech",
    );
  });

  it("refuses what Neon refuses, each with its message", () => {
    const cases: [string | undefined, string][] = [
      [undefined, "invalid header: neon-connection-string"],
      ["mysql://u:p@ep-a.neon.tech/db", "incorrect scheme"],
      ["postgres://u:p@ep-a.neon.tech", "missing database name"],
      ["postgres://u@ep-a.neon.tech/db", "missing authentication credentials: required password"],
      ["postgres://u:p@10.0.0.1/db", "missing hostname"],
    ];
    for (const [header, message] of cases)
      expect(refusal(() => connectionUrl(header))).toEqual({ status: 400, message });
  });
});

describe("batch transaction headers", () => {
  it("turn into the transaction's modes, and an unknown isolation level is refused", () => {
    const h = batchHeaders({ "neon-batch-isolation-level": "RepeatableRead", "neon-batch-read-only": "true" });
    expect(beginStatement(h)).toBe("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    expect(beginStatement(batchHeaders({}))).toBe("START TRANSACTION");
    expect(refusal(() => batchHeaders({ "neon-batch-isolation-level": "Snapshot" }))).toEqual({
      status: 400,
      message: "invalid isolation level",
    });
  });
});
