import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../platform/config.ts";
import { createLogger } from "../../platform/log.ts";
import { keptJwtSecret } from "./kept-secret.ts";

const log = createLogger("api-test", { level: "error", sink: () => undefined });
let dataDir: string;
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "kept-secret-"));
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

describe("keptJwtSecret", () => {
  it("generates a key once and reads the same one back", async () => {
    const first = await keptJwtSecret(join(dataDir, "new"), log);
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(await keptJwtSecret(join(dataDir, "new"), log)).toBe(first);
    expect(await readFile(join(dataDir, "new", "jwt-secret"), "utf8")).toBe(first);
  });

  it("refuses a kept file shorter than JWT_SECRET may be, naming the file, and does not replace it", async () => {
    const file = join(dataDir, "jwt-secret");
    for (const kept of ["", "  \n", "x".repeat(31)]) {
      await writeFile(file, kept);
      await expect(keptJwtSecret(dataDir, log)).rejects.toThrow(
        new ConfigError(
          `${file}: expected a session signing key of at least 32 characters, received ${kept.trim().length}; ` +
            "delete the file to have a new one generated (signing everyone out), or set JWT_SECRET",
        ),
      );
      expect(await readFile(file, "utf8")).toBe(kept);
    }
    await writeFile(file, `${"k".repeat(32)}\n`);
    expect(await keptJwtSecret(dataDir, log)).toBe("k".repeat(32));
  });
});
