// What an upgrade may cost before and after sign-in: a ticket that is not a ticket's shape is refused without a Redis
// command, and a user's sockets on one server are capped (maxConnectionsPerUser). Real Redis, real sockets.
import { randomUUID } from "node:crypto";
import { connect, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import {
  fanOut,
  issueTicket,
  newUserId,
  RefusedUpgrade,
  startTestStream,
  TestClient,
  type TestStream,
} from "./testing/stream-fixture.ts";

let t: TestStream;
/** The stream's command connection, counting the tickets it takes. */
const commands = new Redis(TEST_REDIS_URL);
let getdels = 0;
const getdel = commands.getdel.bind(commands);
(commands as unknown as { getdel: typeof getdel }).getdel = (key: string) => {
  getdels++;
  return getdel(key);
};

beforeAll(async () => {
  t = await startTestStream({ maxConnectionsPerUser: 3 }, { commands });
});
afterAll(async () => {
  await t.close();
  commands.disconnect();
});

async function refused(
  url: string,
): Promise<{ status: number; error: { code: string; message: string }; retryAfter?: unknown }> {
  const error = await TestClient.connect(url).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RefusedUpgrade);
  const { status, body, headers } = error as RefusedUpgrade;
  const retryAfter = headers["retry-after"] === undefined ? {} : { retryAfter: headers["retry-after"] };
  return { status, error: (JSON.parse(body) as { error: { code: string; message: string } }).error, ...retryAfter };
}

describe("a ticket that is not a ticket's shape", () => {
  it("is refused 401 INVALID_TICKET, saying the shape, without a Redis command", async () => {
    const expected = "ticket: expected 43 base64url characters (a ticket from POST /api/v1/stream/ticket), received";
    const before = getdels;
    for (const [ticket, received] of [
      ["x", "1 character"],
      ["x".repeat(300), "300 characters"],
      [`${"A".repeat(42)}=`, "43 characters not all base64url"],
      [`${"A".repeat(42)}%2B`, "43 characters not all base64url"], // "+": base64, not base64url
    ]) {
      expect(await refused(`${t.url}?ticket=${ticket}`)).toEqual({
        status: 401,
        error: { code: "INVALID_TICKET", message: `${expected} ${received}.` },
      });
    }
    expect(getdels - before).toBe(0);
    // One of the right shape is looked up, as before.
    expect((await refused(`${t.url}?ticket=${"A".repeat(43)}`)).error.message).toContain("unknown, used or expired");
    expect(getdels - before).toBe(1);
  });
});

describe("sockets per user", () => {
  it("past maxConnectionsPerUser open on this server, an upgrade is refused 429; other users are not", async () => {
    const userId = newUserId();
    const open = async () =>
      TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId, sessionId: randomUUID() })}`);
    const sockets = [await open(), await open(), await open()];
    const over = await refused(`${t.url}?ticket=${await issueTicket(t, { userId })}`);
    expect(over).toEqual({
      status: 429,
      error: {
        code: "TOO_MANY_CONNECTIONS",
        message:
          "connections: expected at most 3 open sockets per user on this server, received one more; close one first.",
      },
      // A socket that stopped answering is dropped within 2 × heartbeatMs (10 s) and the sweep's period (1 s)
      retryAfter: "21",
    });
    const other = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: newUserId() })}`);
    await other.until((f) => f.some((x) => x.type === "welcome"));
    other.close();

    // Once one closes (and the server has seen it close), the place is free again.
    expect(t.stream.hub.admits(userId)).toBe(false);
    sockets[0]!.close();
    await sockets[0]!.closed;
    for (let i = 0; i < 500 && !t.stream.hub.admits(userId); i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    const again = await open();
    await again.until((f) => f.some((x) => x.type === "welcome"));
    for (const socket of [...sockets.slice(1), again]) socket.close();
  });
});

/**
 * A socket opened by hand that reads what the server sends and never answers anything (no pong, no close frame), as
 * a client that vanished or stopped working; resolves once the server's first frame (the welcome) is in.
 */
async function mute(url: string): Promise<{ socket: Socket; received: () => Buffer }> {
  const { port, pathname, search } = new URL(url);
  const socket = connect(Number(port), "127.0.0.1");
  socket.on("error", () => undefined);
  let received = Buffer.alloc(0);
  const welcomed = new Promise<void>((resolve) =>
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.includes("welcome")) resolve();
    }),
  );
  socket.write(
    `GET ${pathname}${search} HTTP/1.1\r\nHost: stream.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
  );
  await welcomed;
  return { socket, received: () => received };
}

describe("a socket the server closed whose client never answers the close", () => {
  it("gives its user's place back within 2 × heartbeatMs (within the 429's Retry-After), not ws's 30 s", async () => {
    const heartbeatMs = 1_000;
    const s = await startTestStream({ maxConnectionsPerUser: 1, heartbeatMs });
    try {
      const userId = newUserId();
      const sessionId = randomUUID();
      const client = await mute(`${s.url}?ticket=${await issueTicket(s, { userId, sessionId })}`);
      expect(s.stream.hub.admits(userId)).toBe(false);
      await fanOut(s, "revoked", { userId, sessionId }); // the server sends 4401
      // The close frame's payload: the code (4401, two bytes), then the reason.
      const close = Buffer.concat([Buffer.from([4401 >> 8, 4401 & 0xff]), Buffer.from("signed out")]);
      while (!client.received().includes(close)) await new Promise((r) => setTimeout(r, 5));
      const closedAt = Date.now();
      while (!s.stream.hub.admits(userId) && Date.now() - closedAt < 2 * heartbeatMs + 500)
        await new Promise((r) => setTimeout(r, 10));
      expect(s.stream.hub.admits(userId), "the place is free again").toBe(true);
      expect(Date.now() - closedAt).toBeLessThanOrEqual(2 * heartbeatMs);
      const again = await TestClient.connect(`${s.url}?ticket=${await issueTicket(s, { userId })}`);
      await again.until((f) => f.some((x) => x.type === "welcome"));
      again.close();
      client.socket.destroy();
    } finally {
      await s.close();
    }
  });
});
