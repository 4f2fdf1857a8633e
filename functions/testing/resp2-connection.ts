/**
 * Test support: a minimal RESP2 client for the local Upstash peer (upstash-bridge.ts), which must tell a status reply
 * (`+OK`) from a bulk string (`$2 OK`) to encode them as Upstash does; ioredis hands both over as the same Buffer.
 *
 * One connection. The commands of one `send` go out in one write and their replies come back in order, with nothing
 * of another `send` between them, so MULTI … EXEC sent together is a transaction. An error reply is an Error in its
 * reply's place, not a rejection. A lost connection rejects what was waiting; the next `send` opens a new one.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";

/** A RESP2 simple string: OK, PONG, QUEUED, a TYPE's answer. */
export class StatusReply {
  constructor(readonly text: string) {}
}

export type Resp2Reply = Buffer | StatusReply | number | null | Error | Resp2Reply[];

export interface Resp2Connection {
  send(commands: readonly (readonly string[])[]): Promise<Resp2Reply[]>;
  close(): Promise<void>;
}

/** `url`: redis://[[user]:password@]host[:port][/db]. */
export function openResp2Connection(url: string, connectionName: string): Resp2Connection {
  const { hostname, port, username, password, pathname } = new URL(url);
  const setup: string[][] = [];
  if (password !== "")
    setup.push(["AUTH", ...(username === "" ? [] : [decodeURIComponent(username)]), decodeURIComponent(password)]);
  if (pathname.length > 1) setup.push(["SELECT", pathname.slice(1)]);
  setup.push(["CLIENT", "SETNAME", connectionName]);

  let socket: Socket | undefined;
  const waiting: { resolve: (reply: Resp2Reply) => void; reject: (err: Error) => void }[] = [];

  function open(): Socket {
    const opened = connect(Number(port || 6379), hostname.replace(/^\[(.*)\]$/, "$1"));
    opened.setNoDelay(true);
    let chunks: Buffer[] = [];
    let size = 0;
    let need = 1; // bytes the unparsed rest must reach before a parse can finish
    opened.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size < need) return;
      const buffer = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      let at = 0;
      need = 1;
      try {
        while (at < buffer.length) {
          const [reply, end] = parseReply(buffer, at);
          at = end;
          waiting.shift()?.resolve(reply);
        }
      } catch (err) {
        if (!(err instanceof Incomplete)) {
          opened.destroy(err as Error);
          return;
        }
        need = err.bytes - at;
      }
      const rest = buffer.subarray(at);
      chunks = rest.length === 0 ? [] : [rest];
      size = rest.length;
    });
    opened.on("error", () => undefined); // "close" follows, and rejects what waits
    opened.on("close", () => {
      if (socket === opened) socket = undefined;
      for (const { reject } of waiting.splice(0)) reject(new Error("Connection is closed."));
    });
    return opened;
  }

  return {
    async send(commands) {
      const fresh = socket === undefined;
      socket ??= open();
      const batch = fresh ? [...setup, ...commands] : commands;
      const replies = batch.map(() => new Promise<Resp2Reply>((resolve, reject) => waiting.push({ resolve, reject })));
      socket.write(batch.map(encodeCommand).join(""));
      const answered = await Promise.all(replies);
      if (!fresh) return answered;
      const refused = answered.slice(0, setup.length).find((reply) => reply instanceof Error);
      if (refused !== undefined) throw refused;
      return answered.slice(setup.length);
    },
    async close() {
      const open = socket;
      if (open === undefined) return;
      open.end();
      await once(open, "close");
    },
  };
}

function encodeCommand(command: readonly string[]): string {
  return `*${command.length}\r\n${command.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join("")}`;
}

/** The buffer ends before the reply does; `bytes`: the least it must hold (from its start) for the parse to go on. */
class Incomplete extends Error {
  constructor(readonly bytes: number) {
    super(`RESP2: the reply needs ${bytes} bytes`);
  }
}

/** The reply starting at `at`, and where the next one starts. */
function parseReply(buffer: Buffer, at: number): [Resp2Reply, number] {
  const lineEnd = buffer.indexOf("\r\n", at);
  if (lineEnd < 0) throw new Incomplete(buffer.length + 1);
  const line = buffer.toString("utf8", at + 1, lineEnd);
  let next = lineEnd + 2;
  switch (String.fromCharCode(buffer[at]!)) {
    case "+":
      return [new StatusReply(line), next];
    case "-":
      return [new Error(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const length = Number(line);
      if (length < 0) return [null, next];
      if (buffer.length < next + length + 2) throw new Incomplete(next + length + 2);
      return [Buffer.from(buffer.subarray(next, next + length)), next + length + 2];
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: Resp2Reply[] = [];
      for (let i = 0; i < count; i++) {
        const [item, end] = parseReply(buffer, next);
        items.push(item);
        next = end;
      }
      return [items, next];
    }
    default:
      throw new Error(`RESP2: unexpected reply type ${JSON.stringify(buffer.toString("utf8", at, at + 1))}`);
  }
}
