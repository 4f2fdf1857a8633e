// What a client's bad frame is told: the field, what was expected and what came, in words.
import { describe, expect, it } from "vitest";
import { parseClientFrame } from "./client-frames.ts";

describe("parseClientFrame", () => {
  it("names the frame as the field of a frame-level problem, JSON or shape", () => {
    // JSON.parse's words, whose tail differs between Node versions ("(line 1 column 2)" on later ones).
    expect(parseClientFrame("{not json")).toEqual({
      code: "MALFORMED_JSON",
      field: "frame",
      message: expect.stringMatching(
        /^frame: expected one JSON object, received text that is not JSON \(Expected property name or '}' in JSON at position 1\b.*\): "{not json"\.$/,
      ) as unknown,
    });
    expect(parseClientFrame("[1]")).toEqual({
      code: "INVALID_FRAME",
      field: "frame",
      message: "frame: expected a JSON object, received an array [1].",
    });
  });

  it("names what the channel takes for a field it does not take: candles take asset, quotes assets", () => {
    expect(parseClientFrame('{"op":"subscribe","channel":"quotes","asset":"ETH","id":"h"}')).toEqual({
      code: "INVALID_FRAME",
      field: "asset",
      message:
        'asset: expected no such field on the quotes channel, which takes assets (an array such as ["ETH", "BTC"], ' +
        'or none for every asset), received a string "ETH".',
      id: "h",
    });
    expect(parseClientFrame('{"op":"subscribe","channel":"private","asset":"ETH"}')).toMatchObject({
      field: "asset",
      message:
        'asset: expected no such field on the private channel, which takes since (or none), received a string "ETH".',
    });
    // A ping has no channel: only the field is named, even when the field is `channel`.
    expect(parseClientFrame('{"op":"ping","asset":"ETH"}')).toMatchObject({
      field: "asset",
      message: 'asset: expected no such field, received a string "ETH".',
    });
    expect(parseClientFrame('{"op":"ping","channel":"quotes","id":1}')).toEqual({
      code: "INVALID_FRAME",
      field: "channel",
      message: 'channel: expected no such field, received a string "quotes".',
      id: 1,
    });
    expect(parseClientFrame('{"op":"ping","channel":"candles","asset":"ETH"}')).toMatchObject({
      message: 'channel, asset: expected no such field, received a string "candles".',
    });
  });

  it("tells a field the channel does not take before the field it then misses", () => {
    expect(parseClientFrame('{"op":"unsubscribe","channel":"candles","assets":["ETH"],"interval":"1m"}')).toMatchObject(
      {
        field: "assets",
        message:
          'assets: expected no such field on the candles channel, which takes asset and interval, received an array ["ETH"].',
      },
    );
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

  it("refuses a numeric id JSON could not read exactly, for every op, and does not echo it rounded", () => {
    const beyond =
      "id: expected a string of at most 64 characters or a number within ±9007199254740991, received a number beyond ±9007199254740991, past which whole numbers are not read exactly (read as 9007199254740992).";
    for (const frame of [
      '{"op":"ping","id":9007199254740993}',
      '{"op":"subscribe","channel":"quotes","id":9007199254740993}',
      '{"op":"unsubscribe","channel":"candles","asset":"BTC","interval":"2m","id":9007199254740993}',
    ])
      expect(parseClientFrame(frame)).toEqual({ code: "INVALID_FRAME", field: "id", message: beyond });
    expect(parseClientFrame('{"op":"ping","id":-9007199254740993}')).toMatchObject({ field: "id" });
    expect(parseClientFrame('{"op":"ping","id":1e400}')).toEqual({
      code: "INVALID_FRAME",
      field: "id",
      message:
        "id: expected a string of at most 64 characters or a number within ±9007199254740991, received a number too large to read.",
    });
    expect(parseClientFrame('{"op":"ping","id":-9007199254740991}')).toEqual({ op: "ping", id: -9007199254740991 });
    expect(parseClientFrame('{"op":"ping","id":1.5}')).toEqual({ op: "ping", id: 1.5 });
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
