// Who may open a socket and when it is closed on them: tickets (single use, expiring), the Origin check, logout
// notices and the revocation backstop, session expiry. Real Redis, real sockets.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { revokedSessions } from "./stream.ts";
import {
  APP_ORIGIN,
  fanOut,
  issueTicket,
  newUserId,
  RefusedUpgrade,
  startTestStream,
  TestClient,
  type TestStream,
} from "./testing/stream-fixture.ts";

let t: TestStream;

beforeAll(async () => {
  t = await startTestStream({ revocationCheckMs: 300 });
});

afterAll(async () => {
  await t.close();
});

async function refused(url: string, headers: Record<string, string> = {}): Promise<RefusedUpgrade> {
  const error = await TestClient.connect(url, headers).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RefusedUpgrade);
  return error as RefusedUpgrade;
}

describe("upgrade", () => {
  it("a ticket opens one socket, with a welcome naming the user and the limits", async () => {
    const ticket = await issueTicket(t, { userId: "u-welcome" });
    const client = await TestClient.connect(`${t.url}?ticket=${ticket}`, { origin: APP_ORIGIN });
    const welcome = await client.until((f) => f.find((x) => x.type === "welcome"));
    expect(welcome).toMatchObject({
      userId: "u-welcome",
      heartbeatMs: 10_000,
      limits: { maxMessagesPerSec: 20, maxFrameBytes: 4096 },
    });
    client.close();
  });

  it("a plain GET on the stream's path is answered 426 UPGRADE_REQUIRED", async () => {
    const response = await fetch(t.url.replace(/^ws/, "http"));
    expect(response.status).toBe(426);
    expect(await response.json()).toMatchObject({ error: { code: "UPGRADE_REQUIRED" } });
  });

  it("a used ticket is refused with 401 INVALID_TICKET", async () => {
    const ticket = await issueTicket(t, { userId: "u-reuse" });
    const first = await TestClient.connect(`${t.url}?ticket=${ticket}`);
    const again = await refused(`${t.url}?ticket=${ticket}`);
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body)).toMatchObject({ error: { code: "INVALID_TICKET" } });
    first.close();
  });

  it("an expired, unknown or missing ticket is refused with 401", async () => {
    const ticket = await issueTicket(t, { userId: "u-expired" }, 50);
    await new Promise((r) => setTimeout(r, 120));
    const messageOf = async (url: string) => {
      const error = await refused(url);
      expect(error.status).toBe(401);
      return (JSON.parse(error.body) as { error: { code: string; message: string } }).error;
    };
    const expected = "ticket: expected an unused ticket from POST /api/v1/stream/ticket, not older than 30 s; received";
    expect(await messageOf(`${t.url}?ticket=${ticket}`)).toEqual({
      code: "INVALID_TICKET",
      message: `${expected} one that is unknown, used or expired.`,
    });
    expect((await messageOf(`${t.url}?ticket=${"A".repeat(43)}`)).message).toBe(
      `${expected} one that is unknown, used or expired.`,
    );
    expect((await messageOf(t.url)).message).toBe(`${expected} nothing.`);
    expect((await messageOf(`${t.url}?ticket=`)).message).toBe(`${expected} nothing.`);
    // Not a ticket's shape: refused before Redis is asked (upgrade-limits.int.test.ts).
    expect((await messageOf(`${t.url}?ticket=${"x".repeat(300)}`)).message).toBe(
      "ticket: expected 43 base64url characters (a ticket from POST /api/v1/stream/ticket), received 300 characters.",
    );
  });

  it("a foreign Origin is refused with 403 FORBIDDEN_ORIGIN and the ticket is not spent", async () => {
    const ticket = await issueTicket(t, { userId: "u-origin" });
    const error = await refused(`${t.url}?ticket=${ticket}`, { origin: "https://evil.example" });
    expect(error.status).toBe(403);
    expect(JSON.parse(error.body)).toEqual({
      error: {
        code: "FORBIDDEN_ORIGIN",
        message:
          "Origin https://evil.example may not open the stream: a browser may open it only from APP_URL's origin or " +
          "one listed in CORS_ORIGINS (set on the stream as on the API).",
      },
    });
    // No Origin at all: a program, not a browser page.
    const client = await TestClient.connect(`${t.url}?ticket=${ticket}`);
    await client.until((f) => f.some((x) => x.type === "welcome"));
    client.close();
  });

  it("a ticket whose session was signed out after it was issued is refused with 401", async () => {
    const sessionId = randomUUID();
    const ticket = await issueTicket(t, { userId: "u-logout", sessionId });
    // The logout as the API does it (Sessions.revoke, then announceRevoked): the key, then the notice.
    await t.redis.set(t.keys.sessionRevokedKey("u-logout", sessionId), "1", "PX", 60_000);
    await fanOut(t, "revoked", { userId: "u-logout", sessionId });
    const error = await refused(`${t.url}?ticket=${ticket}`);
    expect(error.status).toBe(401);
    expect(JSON.parse(error.body)).toMatchObject({
      error: { code: "INVALID_TICKET", message: expect.stringContaining("signed out") as unknown },
    });
  });

  it("a ticket whose session is signed out while the upgrade reads its revocation key is refused with 401", async () => {
    const [userId, sessionId] = [newUserId(), randomUUID()];
    const ticket = await issueTicket(t, { userId, sessionId });
    const { hub } = t.stream;
    const handleEntry = hub.handleEntry.bind(hub);
    let noticed = () => undefined as void;
    const notice = new Promise<void>((resolve) => (noticed = resolve));
    const entries = vi.spyOn(hub, "handleEntry").mockImplementation((id, fields) => {
      handleEntry(id, fields);
      if (fields.kind === "revoked" && fields.body?.includes(sessionId) === true) noticed();
    });
    // The read runs before the logout; its answer (not signed out) reaches the upgrade after the hub took the notice.
    const exists = t.redis.exists.bind(t.redis);
    const read = vi.spyOn(t.redis, "exists").mockImplementationOnce(async (...keys) => {
      const answer = await exists(...keys);
      await t.redis.set(t.keys.sessionRevokedKey(userId, sessionId), "1", "PX", 60_000);
      await fanOut(t, "revoked", { userId, sessionId });
      await notice;
      return answer;
    });
    try {
      const error = await refused(`${t.url}?ticket=${ticket}`);
      expect(read).toHaveBeenCalledTimes(1);
      expect(await read.mock.results[0]!.value).toBe(0);
      expect(error.status).toBe(401);
      expect(JSON.parse(error.body)).toMatchObject({
        error: { code: "INVALID_TICKET", message: expect.stringContaining("signed out") as unknown },
      });
    } finally {
      read.mockRestore();
      entries.mockRestore();
    }
  });

  it("another path is 404; GET /health answers", async () => {
    const ticket = await issueTicket(t, { userId: "u-path" });
    expect((await refused(t.url.replace("/api/v1/stream", "/elsewhere") + `?ticket=${ticket}`)).status).toBe(404);
    const health = await fetch(t.url.replace("ws:", "http:").replace("/api/v1/stream", "/health"));
    expect(health.status).toBe(200);
  });
});

describe("session end", () => {
  it("a logout notice closes that session's sockets with 4401 within a second, and no other session's", async () => {
    const sessionId = randomUUID();
    const a = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: "u-out", sessionId })}`);
    const b = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: "u-out", sessionId })}`);
    const other = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: "u-out" })}`);
    await a.until((f) => f.length > 0);
    const started = Date.now();
    await fanOut(t, "revoked", { userId: "u-out", sessionId });
    expect((await a.closed).code).toBe(4401);
    expect((await b.closed).code).toBe(4401);
    expect(Date.now() - started).toBeLessThan(1_000);
    other.send({ op: "ping", id: 1 });
    await other.until((f) => f.some((x) => x.type === "pong"));
    other.close();
  });

  it("a revoked session whose notice never came is closed by the backstop check", async () => {
    const sessionId = randomUUID();
    const client = await TestClient.connect(`${t.url}?ticket=${await issueTicket(t, { userId: "u-back", sessionId })}`);
    await t.redis.set(t.keys.sessionRevokedKey("u-back", sessionId), "1", "PX", 60_000);
    expect((await client.closed).code).toBe(4401);
  });

  it("the backstop checks sessions in pipelined chunks, each answered in the order asked", async () => {
    const sessions = Array.from({ length: 7 }, (_, i) => ({ userId: `u-chunk-${i % 3}`, sessionId: randomUUID() }));
    for (const i of [0, 3, 6])
      await t.redis.set(t.keys.sessionRevokedKey(sessions[i]!.userId, sessions[i]!.sessionId), "1", "PX", 60_000);
    const pipeline = vi.spyOn(t.redis, "pipeline");
    const revoked = await revokedSessions(t.redis, t.keys, sessions, 3);
    expect(revoked).toEqual([true, false, false, true, false, false, true]);
    expect(pipeline).toHaveBeenCalledTimes(3);
    pipeline.mockRestore();
  });

  it("a session past its expiry is closed with 4401", async () => {
    const ticket = await issueTicket(t, { userId: "u-exp", sessionExpiresAtMs: Date.now() + 700 });
    const client = await TestClient.connect(`${t.url}?ticket=${ticket}`);
    const started = Date.now();
    expect((await client.closed).code).toBe(4401);
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
