import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, readFile, readlink, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensurePostgres } from "./local-postgres.ts";
import { running, type LocalServer } from "./local-servers.ts";
import { createLogger } from "./log.ts";
import { connectPostgres } from "./postgres.ts";
import { until } from "./testing/processes.ts";
import { TEST_DATABASE_ADMIN_URL } from "./testing/test-servers.ts";

const events: string[] = [];
const log = createLogger("local-postgres-test", {
  sink: (line) => events.push(String((JSON.parse(line) as { event: string }).event)),
});
const PATH = process.env.PATH;
const dirs: string[] = [];
/** Clusters kept outside a data folder (root, private folder), removed after the run. */
const shared: string[] = [];

/** A fresh data folder that the `postgres` user can reach (mkdtemp makes it 0700). */
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "local-postgres-test-"));
  await chmod(dir, 0o755);
  dirs.push(dir);
  return dir;
}

async function ownerOf(path: string): Promise<{ uid: number; gid: number }> {
  const { uid, gid } = await stat(path);
  return { uid, gid };
}

afterAll(async () => {
  for (const dir of [...dirs, ...shared]) await rm(dir, { recursive: true, force: true });
});

describe("ensurePostgres", () => {
  it.runIf(process.getuid?.() === 0)(
    "as root, in a folder closed to other users: the cluster is kept where the postgres user can reach it, linked from the data folder, and deleting the data folder resets it",
    { timeout: 120_000 },
    async () => {
      const closed = await dataDir();
      await chmod(closed, 0o700);
      const dir = join(closed, "data");
      const options = { dataDir: dir, log, env: { PATH }, prefer: "own", preferredPort: 0 } as const;
      let pg: LocalServer | undefined;
      try {
        events.length = 0;
        pg = await ensurePostgres(options);
        const link = await readlink(join(dir, "postgres"));
        shared.push(link);
        expect(link).toMatch(/^\/var\/lib\/paper-broker\/postgres\/[0-9a-f]{16}$/);
        expect(events).toEqual(expect.arrayContaining(["postgres_home_linked", "postgres_cluster_created"]));
        let db = await connectPostgres(pg.url, log);
        await db.query("CREATE TABLE kept (note text)");
        await db.close();
        await pg.stop();

        // The data folder moved: its link still leads to the same cluster, with its data.
        const moved = join(closed, "moved");
        await rename(dir, moved);
        pg = await ensurePostgres({ ...options, dataDir: moved });
        expect(await readlink(join(moved, "postgres"))).toBe(link);
        db = await connectPostgres(pg.url, log);
        expect((await db.query("SELECT to_regclass('kept')::text AS t")).rows).toEqual([{ t: "kept" }]);
        await db.close();
        await pg.stop();
        await rename(moved, dir);

        // A reset: the data folder deleted, the next start gets an empty cluster at the same place.
        await rm(dir, { recursive: true, force: true });
        events.length = 0;
        pg = await ensurePostgres(options);
        expect(await readlink(join(dir, "postgres"))).toBe(link);
        expect(events).toContain("postgres_cluster_created");
        db = await connectPostgres(pg.url, log);
        expect((await db.query("SELECT to_regclass('kept') AS t")).rows).toEqual([{ t: null }]);
        await db.close();
      } finally {
        await pg?.stop();
      }
    },
  );

  it(
    "starts again a cluster whose server was killed and not yet reaped, rather than adopt it dead",
    { timeout: 120_000 },
    async () => {
      const dir = await dataDir();
      const options = { dataDir: dir, log, env: { PATH }, prefer: "own", preferredPort: 0 } as const;
      const pidFile = join(dir, "postgres", "data", "postmaster.pid");
      let first: LocalServer | undefined;
      let again: LocalServer | undefined;
      let zombie: ChildProcess | undefined;
      try {
        first = await ensurePostgres(options);
        // As root the server runs as the `postgres` user (local-postgres.ts), and so must its stand-in below.
        const owner = process.getuid?.() === 0 ? await ownerOf(join(dir, "postgres", "data")) : {};
        zombie = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 60"], {
          stdio: ["ignore", "pipe", "ignore"],
          ...owner,
        });
        const left = await readFile(pidFile, "utf8");
        const pid = Number(left.split("\n")[0]);
        process.kill(pid, "SIGKILL");
        await until(async () => !(await running(pid)) || undefined, 10_000, "the killed server gone");
        // Until init reaps a killed server, its pid still exists, as a zombie's: one stands in for it here, since when
        // init reaps varies by machine (about a second in some containers).
        const zombiePid = Number(await new Promise<string>((r) => zombie!.stdout!.once("data", (d) => r(String(d)))));
        await until(async () => !(await running(zombiePid)) || undefined, 5_000, "the zombie");
        await writeFile(pidFile, left.replace(/^\d+/, String(zombiePid)));
        // Its parent ends a second on, and init reaps it.
        setTimeout(() => zombie?.kill(), 1_000);

        events.length = 0;
        again = await ensurePostgres({ ...options, onlyPort: Number(new URL(first.url).port) });
        expect(events).toContain("postgres_started");
        expect(events).not.toContain("postgres_adopted");
        const db = await connectPostgres(again.url, log);
        await db.close();
      } finally {
        zombie?.kill();
        await again?.stop();
      }
    },
  );

  it("uses DATABASE_URL when set", async () => {
    const pg = await ensurePostgres({
      dataDir: await dataDir(),
      log,
      env: { DATABASE_URL: TEST_DATABASE_ADMIN_URL },
      prefer: "own",
    });
    expect(pg).toMatchObject({ url: TEST_DATABASE_ADMIN_URL, started: false });
  });

  it("prefer running (tests): uses a Postgres answering at the local address", async () => {
    const pg = await ensurePostgres({
      dataDir: await dataDir(),
      log,
      env: { LOCAL_POSTGRES_PROBE_URL: TEST_DATABASE_ADMIN_URL, PATH },
      prefer: "running",
      database: "postgres",
    });
    expect(pg).toMatchObject({ url: TEST_DATABASE_ADMIN_URL, started: false });
  });

  it(
    "prefer own (npm start): runs embedded Postgres in the data folder even when the local address answers: created once, database paper_broker, data kept across stop and start",
    { timeout: 120_000 },
    async () => {
      const dir = await dataDir();
      const options = {
        dataDir: dir,
        log,
        env: { PATH, LOCAL_POSTGRES_PROBE_URL: TEST_DATABASE_ADMIN_URL },
        prefer: "own",
        preferredPort: 0,
      } as const;
      let first: LocalServer | undefined;
      let second: LocalServer | undefined;
      try {
        events.length = 0;
        first = await ensurePostgres(options);
        expect(first.started).toBe(true);
        expect(first.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/paper_broker$/);
        expect(events).toEqual(
          expect.arrayContaining(["postgres_cluster_created", "postgres_started", "postgres_database_created"]),
        );
        let db = await connectPostgres(first.url, log);
        await db.query("CREATE TABLE kept (note text)");
        await db.query("INSERT INTO kept VALUES ('survives a restart')");
        await db.close();

        // Adopting the running cluster (a rerun after the caller died) gives the same server.
        const adopted = await ensurePostgres(options);
        expect(adopted).toMatchObject({ url: first.url, started: true });

        await first.stop();
        await expect(connectPostgres(first.url, log)).rejects.toThrow(/cannot reach Postgres/);

        events.length = 0;
        second = await ensurePostgres(options);
        expect(second).toMatchObject({ url: first.url, started: true });
        expect(events).toContain("postgres_started");
        expect(events).not.toContain("postgres_cluster_created");
        expect(events).not.toContain("postgres_database_created");
        db = await connectPostgres(second.url, log);
        expect((await db.query("SELECT note FROM kept")).rows).toEqual([{ note: "survives a restart" }]);
        await db.close();
        await adopted.stop(); // a stale handle: the server it knew is gone, so it leaves the new one alone
        db = await connectPostgres(second.url, log);
        await db.close();
      } finally {
        await first?.stop();
        await second?.stop();
      }
    },
  );
});
