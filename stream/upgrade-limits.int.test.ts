// What an upgrade may cost before and after sign-in: a ticket that is not a ticket's shape is refused without a Redis
// command, and a user's sockets on one server are capped (maxConnectionsPerUser). Real Redis, real sockets.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_REDIS_URL } from "../platform/testing/test-servers.ts";
import {
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
      retryAfter: "20", // a socket that stopped answering is dropped within 2 × heartbeatMs (10 s)
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
