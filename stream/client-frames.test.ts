// What a client's bad frame is told: the field, what was expected and what came, in words.
import { describe, expect, it } from "vitest";
import { parseClientFrame } from "./client-frames.ts";

describe("parseClientFrame", () => {
  it("names the frame as the field of a frame-level problem, JSON or shape", () => {
    expect(parseClientFrame("{not json")).toMatchObject({ code: "MALFORMED_JSON", field: "frame" });
    expect(parseClientFrame("[1]")).toEqual({
      code: "INVALID_FRAME",
      field: "frame",
      message: "frame: expected a JSON object, received an array [1].",
    });
  });

  it("says the expected type in words", () => {
    expect(parseClientFrame('{"op":"subscribe","channel":"quotes","assets":"BTC"}')).toMatchObject({
      field: "assets",
      message: 'assets: expected an array, received a string "BTC".',
    });
    expect(parseClientFrame('{"op":"subscribe","channel":"private","since":1.5}')).toMatchObject({
      field: "since",
      message: "since: expected a whole number, received a number 1.5.",
    });
  });

  it("does not misquote a number JSON could not be read exactly as", () => {
    expect(parseClientFrame('{"op":"subscribe","channel":"private","since":9007199254740993}')).toMatchObject({
      field: "since",
      message:
        "since: expected at most 9007199254740991, received a number beyond ±9007199254740991, past which whole numbers are not read exactly (read as 9007199254740992).",
    });
    expect(parseClientFrame('{"op":"subscribe","channel":"private","since":1e400}')).toMatchObject({
      field: "since",
      message: "since: expected a number, received a number too large to read.",
    });
  });

  it("echoes a request's id in the problem, when the id itself could be read", () => {
    const answer = parseClientFrame('{"op":"subscribe","channel":"candles","asset":"BTC","interval":"2m","id":"c1"}');
    expect(answer).toMatchObject({ code: "INVALID_FRAME", field: "interval", id: "c1" });
    expect(parseClientFrame('{"op":"subscrib","id":7}')).toMatchObject({ field: "op", id: 7 });
    expect(parseClientFrame('{"op":"subscribe","channel":"private","id":{}}')).not.toHaveProperty("id");
    expect(parseClientFrame('{"op":"unsubscribe","channel":"quotes","id":"u"}')).toEqual({
      op: "unsubscribe",
      subscription: { channel: "quotes" },
      id: "u",
    });
  });
});
