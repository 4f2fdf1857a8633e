/**
 * The session signing key the Node API keeps in its data folder when JWT_SECRET is not set (server.ts): generated
 * once, so sessions survive restarts. The file is checked as JWT_SECRET is: an empty or short one (truncated,
 * edited by hand) would sign every session with a weak key, or fail every sign-in, so the API refuses to start.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../platform/config.ts";
import type { Logger } from "../../platform/log.ts";
import { JWT_SECRET_MIN_LENGTH } from "../config.ts";

export async function keptJwtSecret(dataDir: string, log: Logger): Promise<string> {
  const file = join(dataDir, "jwt-secret");
  let secret: string;
  try {
    secret = (await readFile(file, "utf8")).trim();
  } catch {
    await mkdir(dataDir, { recursive: true });
    // wx: if another process created it first, keep theirs.
    await writeFile(file, randomBytes(32).toString("base64url"), { mode: 0o600, flag: "wx" }).catch(() => undefined);
    log.info("jwt_secret_generated", { file });
    secret = (await readFile(file, "utf8")).trim();
  }
  if (secret.length < JWT_SECRET_MIN_LENGTH)
    throw new ConfigError(
      `${file}: expected a session signing key of at least ${JWT_SECRET_MIN_LENGTH} characters, received ` +
        `${secret.length}; delete the file to have a new one generated (signing everyone out), or set JWT_SECRET`,
    );
  return secret;
}
