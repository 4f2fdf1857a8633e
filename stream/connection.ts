/**
 * One client socket: who it belongs to (from its ticket), what it sends (counted against the message rate), and
 * its place in the sweeps (heartbeats, liveness, session expiry). What it is subscribed to lives in the fan-outs
 * (quotes.ts, candles.ts) and its private channel (private-channel.ts).
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { WebSocket } from "ws";
import { CLOSE_CODES, type ServerFrame } from "../client/protocol.ts";
import type { StreamTicketGrant } from "../functions/auth/stream-tickets.ts";
import type { PrivateChannel } from "./private-channel.ts";
import type { StreamMetrics } from "./metrics.ts";

export interface StreamLimits {
  readonly heartbeatMs: number;
  readonly maxMessagesPerSec: number;
  readonly rateBurstSeconds: number;
  readonly maxSubscriptions: number;
  readonly maxFrameBytes: number;
  /** Open sockets per user on one stream server (STREAM_MAX_CONNECTIONS_PER_USER): an upgrade past it gets 429. */
  readonly maxConnectionsPerUser: number;
  readonly quoteThinBytes: number;
  /** The send buffer's cap for every frame, private or not (STREAM_PRIVATE_BUFFER_CAP_BYTES): over it, 4008. */
  readonly privateBufferCapBytes: number;
  readonly quoteIntervalMs: number;
  readonly summaryIntervalMs: number;
  readonly revocationCheckMs: number;
}

/** Who a ticket was issued to, as the API stores it. */
export type Ticket = StreamTicketGrant;

export type FrameType = ServerFrame["type"];

/**
 * Every `nowMs` and `…Ms` time here but `sessionExpiresAtMs` (wall clock, as the ticket states it) is on the stream's
 * monotonic clock (clock.ts): only their differences mean anything.
 */
export class StreamConnection {
  readonly userId: string;
  readonly sessionId: string;
  readonly sessionExpiresAtMs: number;
  /** When the last frame went out (a heartbeat is sent only after heartbeatMs of silence). */
  lastSentMs: number;
  /** When the last ping was answered (or the socket opened). */
  lastPongMs: number;
  lastPingMs: number;
  closed = false;
  /** The code this server closed the socket with; undefined when the client closed it first or it dropped. */
  closeCode: number | undefined;
  /** Per asset: when its last quote went out to this client. */
  readonly quoteSentMs = new Map<string, number>();
  quotes: "all" | Set<string> | undefined;
  readonly candles = new Set<string>();
  private: PrivateChannel | undefined;
  private tokens: number;
  private tokensAtMs: number;
  /**
   * The payload of the ping not yet answered. A pong counts only if it echoes it (RFC 6455 §5.5.3: browsers and ws
   * do): a client that stopped reading never sees the ping, behind its backlog, and pongs it did not read prove
   * nothing.
   */
  private pingPayload: Buffer | undefined;
  /** The largest frame written since the send buffer was last at or under the cap (see sent). */
  private largestWaitingBytes = 0;

  constructor(
    private readonly ws: WebSocket,
    ticket: Ticket,
    private readonly limits: StreamLimits,
    private readonly metrics: StreamMetrics,
    nowMs: number,
  ) {
    this.userId = ticket.userId;
    this.sessionId = ticket.sessionId;
    this.sessionExpiresAtMs = ticket.sessionExpiresAtMs;
    this.lastSentMs = nowMs;
    this.lastPongMs = nowMs;
    this.lastPingMs = nowMs;
    this.tokens = limits.maxMessagesPerSec * limits.rateBurstSeconds;
    this.tokensAtMs = nowMs;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /**
   * Bytes the client has not taken yet, after the frames corked for it went to the kernel: frames held only by the
   * cork below are not the client's backlog, and a resume that sends hundreds of events in one turn must not read
   * as a stalled client.
   */
  get backlogBytes(): number {
    this.flush();
    return this.ws.bufferedAmount;
  }

  /**
   * Hands what is corked for this socket to the kernel now, rather than at its turn (corkUntilTurn): for private
   * events, which must not wait behind a quote burst to every socket.
   */
  flush(): void {
    socketOf(this.ws)?.uncork();
  }

  /** How many subscriptions count against maxSubscriptions: each asset, candle series and the private channel. */
  get subscriptionCount(): number {
    const quotes = this.quotes === undefined ? 0 : this.quotes === "all" ? 1 : this.quotes.size;
    return quotes + this.candles.size + (this.private === undefined ? 0 : 1);
  }

  /** Sends a text frame serialised for this socket (or for many, as a Buffer). */
  sendRaw(frame: Buffer | string, type: FrameType, nowMs: number): void {
    if (this.closed) return;
    corkUntilTurn(this.ws);
    this.ws.send(frame, { binary: false });
    this.sent(type, frame, nowMs);
  }

  /**
   * Sends a frame framed once for many sockets: its bytes go to the socket as they are. ws's own send would frame
   * them again for each socket and write header and payload apart; in a burst to every socket that is about a fifth
   * of the time. Bypassing ws's sender keeps frames in order only because it never holds one back: it queues only
   * while compressing (permessage-deflate is off, server.ts) or reading a Blob (never sent here).
   */
  sendShared(frame: SharedFrame, type: FrameType, nowMs: number): void {
    if (this.closed) return;
    const socket = socketOf(this.ws);
    if (socket === undefined || this.ws.readyState !== this.ws.OPEN) {
      this.sendRaw(frame.payload, type, nowMs); // a test double, or closing: ws decides
      return;
    }
    corkUntilTurn(this.ws);
    socket.write(frame.wire);
    this.sent(type, frame.payload, nowMs);
  }

  send(frame: { type: FrameType } & Record<string, unknown>, nowMs: number): void {
    this.sendRaw(JSON.stringify(frame), frame.type, nowMs);
  }

  /** Takes one message from the rate budget: false once a client has sent over the rate for a burst's worth. */
  admitMessage(nowMs: number): boolean {
    const cap = this.limits.maxMessagesPerSec * this.limits.rateBurstSeconds;
    this.tokens = Math.min(cap, this.tokens + ((nowMs - this.tokensAtMs) * this.limits.maxMessagesPerSec) / 1000);
    this.tokensAtMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether a ping is due: heartbeatMs since the last one, and that one answered. */
  pingDue(nowMs: number): boolean {
    return this.pingPayload === undefined && nowMs - this.lastPingMs >= this.limits.heartbeatMs;
  }

  ping(nowMs: number): void {
    if (this.closed) return;
    this.lastPingMs = nowMs;
    this.pingPayload = randomBytes(8);
    this.ws.ping(this.pingPayload);
  }

  /** Answers a client's ping with its payload (RFC 6455 §5.5.3), as ws would with autoPong on (server.ts). */
  answerPing(payload: Buffer): void {
    if (this.closed) return;
    this.ws.pong(payload);
  }

  /** A pong from the client: alive only if it answers the ping outstanding. */
  pong(payload: Buffer, nowMs: number): void {
    if (this.pingPayload === undefined || !payload.equals(this.pingPayload)) return;
    this.pingPayload = undefined;
    this.lastPongMs = nowMs;
  }

  /**
   * Its private channel stops first, whatever the code: the socket stays registered until its client answers the
   * close (or for heartbeatMs), and a channel left running meanwhile would read the store for frames never sent.
   */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = this.closedFirst(code);
    this.private?.stop();
    this.ws.close(code, reason);
  }

  /**
   * After every frame, whatever its type: a client that does not read is closed rather than buffered for without
   * bound, and resumes. Quotes and candles are held back before the cap (quotes.ts, candle-delivery.ts), so it
   * is the frames never dropped (private events, summaries, answers) that fill it. The largest frame written since
   * the buffer was last under the cap does not count: one frame larger than the cap (the snapshot of an account with
   * many trades) would otherwise close a client that keeps up, as soon as it is written or at the next frame while it is read, and its resubscribe would
   * get the same snapshot again. A client that stopped reading is closed once the cap's worth of frames more piles up
   * behind it: a send buffer holds no more than the cap and its largest frame. bufferedAmount first, as it is cheap:
   * backlogBytes uncorks.
   */
  private sent(type: FrameType, payload: Buffer | string, nowMs: number): void {
    this.lastSentMs = nowMs;
    this.metrics.frameSent(type);
    const cap = this.limits.privateBufferCapBytes;
    if (this.ws.bufferedAmount <= cap) {
      this.largestWaitingBytes = 0;
      return;
    }
    this.largestWaitingBytes = Math.max(this.largestWaitingBytes, wireBytes(payload));
    const exempt = this.largestWaitingBytes;
    if (this.ws.bufferedAmount - exempt <= cap || this.backlogBytes - exempt <= cap) return;
    this.close(CLOSE_CODES.tooSlow, "too slow: reconnect and resume");
  }

  /** No close handshake: the peer stopped answering pings. */
  terminate(): void {
    this.closed = true;
    this.closeCode = this.closedFirst(1006);
    this.private?.stop();
    this.ws.terminate();
  }

  /**
   * `code`, if this server closes the socket first; undefined if the client's close frame came first. ws answers that
   * frame at once (CLOSING), but the socket stays registered until the client ends it (or closeTimeout), and a close
   * meanwhile (its session expiring, a 4008 from frames ws buffers after the close) is not the server's.
   */
  private closedFirst(code: number): number | undefined {
    return this.ws.readyState === WebSocket.OPEN ? code : undefined;
  }
}

/** A text frame for many sockets: its payload, and the whole frame as it goes on the wire. */
export class SharedFrame {
  readonly wire: Buffer;

  constructor(readonly payload: Buffer) {
    this.wire = Buffer.concat([textFrameHeader(payload.length), payload]);
  }
}

/** A text frame's size on the wire: its payload's bytes and its header (textFrameHeader). */
function wireBytes(payload: Buffer | string): number {
  const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
  return length + (length < 126 ? 2 : length < 65_536 ? 4 : 10);
}

/**
 * RFC 6455 §5.2: FIN and the text opcode, no mask (a server's frames are never masked), and the payload length in
 * 7 bits, or 126 and 16 bits, or 127 and 64 bits.
 */
function textFrameHeader(length: number): Buffer {
  if (length < 126) return Buffer.from([0x81, length]);
  if (length < 65_536) return Buffer.from([0x81, 126, length >> 8, length & 0xff]);
  const header = Buffer.alloc(10);
  header[0] = 0x81;
  header[1] = 127;
  header.writeBigUInt64BE(BigInt(length), 2);
  return header;
}

/**
 * The sockets written to, corked until their turn: a fan-out read that carries several quotes (every market ticks at
 * once) and the events after them becomes one write per socket instead of one per frame. They are uncorked in order,
 * UNCORK_PER_TURN a turn of the event loop, with the loop's I/O in between: what the fan-out brings meanwhile (the
 * rest of a tick, a private event) joins the sockets not yet written, in the same write, instead of a second burst
 * to every socket behind the first. A socket written again after its turn is corked again at the end of the list.
 */
const corked: Socket[] = [];
/** Sockets uncorked per turn: small enough that a burst to 1,000 sockets lets I/O in about 20 times. */
const UNCORK_PER_TURN = 50;

function corkUntilTurn(ws: WebSocket): void {
  const socket = socketOf(ws);
  if (socket === undefined || socket.writableCorked > 0) return;
  socket.cork();
  if (corked.push(socket) === 1) setImmediate(uncorkSome);
}

/** ws keeps its net.Socket in a field it does not type; a test double has none, and then nothing is corked. */
function socketOf(ws: WebSocket): Socket | undefined {
  return (ws as unknown as { _socket?: Socket })._socket;
}

function uncorkSome(): void {
  for (const socket of corked.splice(0, UNCORK_PER_TURN)) socket.uncork();
  if (corked.length > 0) setImmediate(uncorkSome);
}
