/**
 * Parsing of one Backpack WebSocket text frame into a quote, a heartbeat, or a reason it was refused.
 *
 * Two streams per market (Backpack's WebSocket docs, https://docs.backpack.exchange/#tag/Streams, "Book ticker"
 * and "Mark price"; the same shapes in the AsyncAPI transcription of those docs,
 * github.com/api-evangelist/backpack asyncapi/backpack-asyncapi.yml; all times in µs):
 * - `{"stream":"bookTicker.X","data":{"e":"bookTicker","E":µs,"T":µs,"s":"X","a":"4303.93","A":"..",
 *   "b":"4303.90","B":"..","u":id}}`: the top of the book, pushed when it changes (`T` = engine time);
 * - `{"stream":"markPrice.X","data":{"e":"markPrice","E":µs,"s":"X","p":"mark","f":"funding","i":"index",
 *   "n":ms,"T":µs}}`: the mark price, pushed about once a second whether or not the book moves. Only `s` and `E`
 *   (event time) are read: the frame is the exchange saying "market X is live at E" (heartbeat.ts).
 *
 * Contract of the result:
 * - prices are checked against the market's `priceDecimals` and `maxPriceTicks` with the money module's rules
 *   (no sign, no exponent, no non-zero digit beyond the scale; trailing zeros are fine) and returned canonical
 *   ("4303.90" → "4303.9"), so equal quotes compare equal as strings and the engine parses them to the same ticks;
 * - `u` and `T` are digit strings taken from the frame's text, never from a JS number (`u` can exceed 2^53);
 * - a heartbeat's `E` is a digit string from the frame's text, like `T`;
 * - messages without `stream`/`data` (subscription answers, errors) are `control`: not quotes, not garbage.
 * - a bookTicker frame of a known market refused for its prices (`invalid_price`, `crossed_quote`, or
 *   `missing_field` for an absent `a` or `b`, as when a side of the book empties), or with readable prices but an
 *   absent or unreadable `u` (`missing_field` / `invalid_field`), carries its market and `T` (`book`) when its `T`
 *   is good: the exchange's word that the market's top moved, to a top we cannot take (feed-client.ts stops
 *   vouching for the old one). An absent side says what an empty one (`invalid_price`) says: both stop it. So does
 *   an unreadable id: without it the frame cannot be put in sequence, but its time says the book changed.
 * Never throws: the feed is untrusted input.
 */
import type { RawData } from "ws";
import type { AssetConfig } from "../contract/markets.ts";
import { decimalsWord, formatUnits, parseUnits } from "../contract/money.ts";
import { isJsonObject, parseExactJson, RawNumber, type ExactJson } from "../platform/exact-json.ts";

export interface FeedQuote {
  readonly market: string;
  readonly bid: string;
  readonly ask: string;
  /** Backpack's `T` (engine time of the update) in microseconds, as digits. */
  readonly exchangeTimeUs: string;
  /** Backpack's `u`, as digits exactly as sent; compare with `BigInt`, never `Number`. */
  readonly updateId: string;
}

/** The top of the book as published: a quote without its update id. */
export type TopOfBook = Omit<FeedQuote, "updateId">;

/** A `markPrice` frame: the exchange's word that `market` is live at `exchangeTimeUs` (its `E`, as digits). */
export interface FeedHeartbeat {
  readonly market: string;
  readonly exchangeTimeUs: string;
}

/** The streams subscribed for each market: its book top, and its mark price as the market's heartbeat. */
export function streamsFor(markets: readonly AssetConfig[]): string[] {
  return markets.flatMap((m) => [`bookTicker.${m.market}`, `markPrice.${m.market}`]);
}

export const FRAME_DROP_REASONS = [
  "oversized",
  "malformed_json",
  "not_an_object",
  "missing_field",
  "invalid_field",
  "wrong_event",
  "unknown_market",
  "stream_mismatch",
  "invalid_price",
  "crossed_quote",
] as const;
export type FrameDropReason = (typeof FRAME_DROP_REASONS)[number];

type JsonObject = { readonly [key: string]: ExactJson };

export type FrameResult =
  | { readonly kind: "quote"; readonly quote: FeedQuote }
  | { readonly kind: "heartbeat"; readonly heartbeat: FeedHeartbeat }
  | { readonly kind: "control"; readonly error: string | undefined }
  | {
      readonly kind: "rejected";
      readonly reason: FrameDropReason;
      readonly detail: string;
      /** For a book frame refused for its prices, or for a side missing: its market and exchange time (see above). */
      readonly book?: { readonly market: string; readonly exchangeTimeUs: string };
    };

/** Markets by Backpack symbol. */
export type MarketTable = ReadonlyMap<string, AssetConfig>;

export function marketTable(assets: readonly AssetConfig[]): MarketTable {
  return new Map(assets.map((a) => [a.market, a]));
}

/** bookTicker and markPrice frames are ~250 bytes; anything far larger is neither and is refused before parsing. */
export const MAX_FRAME_CHARS = 16_384;
/** A frame nests 2 deep; the limit only bounds the parser's recursion on hostile frames. */
const MAX_FRAME_DEPTH = 16;
/** Longer than any real id (Backpack's fit in 64 bits: 20 digits) yet bounded, so a hostile frame stays cheap. */
const MAX_ID_DIGITS = 40;
/** The contract's limit for `exchangeTimeUs`. */
const MAX_TIME_DIGITS = 20;

/** The refusals of a book frame's prices or id that say its top moved (withBook). */
const BOOK_REFUSALS: ReadonlySet<FrameDropReason> = new Set([
  "missing_field",
  "invalid_field",
  "invalid_price",
  "crossed_quote",
]);

const reject = (reason: FrameDropReason, detail: string): FrameResult => ({ kind: "rejected", reason, detail });

export function parseFrame(text: string, markets: MarketTable): FrameResult {
  if (text.length > MAX_FRAME_CHARS) return reject("oversized", `${text.length} characters`);
  const message = parseExactJson(text, MAX_FRAME_DEPTH);
  if (message === undefined) return reject("malformed_json", "not valid JSON");
  if (!isJsonObject(message)) return reject("not_an_object", "top level is not an object");
  if (!Object.hasOwn(message, "stream") && !Object.hasOwn(message, "data")) {
    const error = Object.hasOwn(message, "error") ? JSON.stringify(toPlain(message.error)).slice(0, 300) : undefined;
    return { kind: "control", error };
  }
  const stream = message.stream;
  const data = message.data;
  if (typeof stream !== "string") return reject(stream === undefined ? "missing_field" : "invalid_field", "stream");
  if (!isJsonObject(data)) return reject(data === undefined ? "missing_field" : "invalid_field", "data");
  if (data.e === undefined) return reject("missing_field", "e");
  const event = data.e;
  if (event !== "bookTicker" && event !== "markPrice") {
    return reject("wrong_event", `e: ${JSON.stringify(toPlain(event))}`);
  }

  const symbol = data.s;
  if (typeof symbol !== "string") return reject(symbol === undefined ? "missing_field" : "invalid_field", "s");
  const asset = markets.get(symbol);
  if (asset === undefined) return reject("unknown_market", symbol.slice(0, 40));
  if (stream !== `${event}.${symbol}`) return reject("stream_mismatch", `${stream.slice(0, 60)} carries ${symbol}`);
  if (event === "markPrice") {
    const eventTimeUs = digits(data, "E", MAX_TIME_DIGITS);
    if (typeof eventTimeUs !== "string") return eventTimeUs;
    return { kind: "heartbeat", heartbeat: { market: symbol, exchangeTimeUs: eventTimeUs } };
  }

  const bid = price(data, "b", asset);
  if (typeof bid !== "number") return withBook(bid, symbol, data);
  const ask = price(data, "a", asset);
  if (typeof ask !== "number") return withBook(ask, symbol, data);
  if (bid > ask)
    return withBook(reject("crossed_quote", `bid ${data.b as string} > ask ${data.a as string}`), symbol, data);

  const updateId = digits(data, "u", MAX_ID_DIGITS);
  if (typeof updateId !== "string") return withBook(updateId, symbol, data);
  const exchangeTimeUs = digits(data, "T", MAX_TIME_DIGITS);
  if (typeof exchangeTimeUs !== "string") return exchangeTimeUs;

  return {
    kind: "quote",
    quote: {
      market: symbol,
      bid: formatUnits(bid, asset.priceDecimals),
      ask: formatUnits(ask, asset.priceDecimals),
      exchangeTimeUs,
      updateId,
    },
  };
}

/** A price field in ticks, or the rejection. Numbers are refused: a binary float has already lost the decimal. */
function price(data: JsonObject, field: "a" | "b", asset: AssetConfig): number | FrameResult {
  const value = data[field];
  if (value === undefined) return reject("missing_field", field);
  if (typeof value !== "string") return reject("invalid_price", `${field}: not a decimal string`);
  const parsed = parseUnits(value, asset.priceDecimals, asset.maxPriceTicks);
  const shown = JSON.stringify(value.slice(0, 40));
  if (!parsed.ok) {
    const why = {
      MALFORMED: "is not a decimal string",
      TOO_MANY_DECIMALS: `has more than ${decimalsWord(asset.priceDecimals)}`,
      OUT_OF_RANGE: "is above the market's limit",
    }[parsed.reason];
    return reject("invalid_price", `${field}: ${shown} ${why}`);
  }
  if (parsed.units === 0) return reject("invalid_price", `${field}: zero`);
  return parsed.units;
}

/**
 * A book frame's refusal for its prices or its `u`, with its market and time when its `T` is good (see above). Only
 * called with `price`'s refusals, `crossed_quote` and the `u` check's, so a field refused here is `a`, `b` or `u`.
 */
function withBook(result: FrameResult, market: string, data: JsonObject): FrameResult {
  if (result.kind !== "rejected" || !BOOK_REFUSALS.has(result.reason)) return result;
  const exchangeTimeUs = digits(data, "T", MAX_TIME_DIGITS);
  return typeof exchangeTimeUs === "string" ? { ...result, book: { market, exchangeTimeUs } } : result;
}

/** A non-negative integer field given as a JSON number or a digit string, returned as its exact digits. */
function digits(data: JsonObject, field: string, maxDigits: number): string | FrameResult {
  const value = data[field];
  if (value === undefined) return reject("missing_field", field);
  const text = value instanceof RawNumber ? value.text : typeof value === "string" ? value : undefined;
  if (text === undefined || text.length > maxDigits || !/^\d+$/.test(text)) {
    return reject("invalid_field", `${field}: not an integer of at most ${maxDigits} digits`);
  }
  return text;
}

/** The text of a ws message, whichever buffer shape ws delivered it in. */
export function frameText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return Buffer.from(data).toString("utf8");
}

/** For error messages only: the value as plain JSON. */
function toPlain(value: ExactJson | undefined): unknown {
  if (value instanceof RawNumber) return value.text;
  if (Array.isArray(value)) return value.map(toPlain);
  if (isJsonObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]));
  return value;
}
