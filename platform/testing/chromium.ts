/**
 * Debian's Chromium for browser tests, driven by playwright-core (Playwright's own browser download is not
 * reachable here). A test file without it skips, saying so on stderr; under CI (CI=true) the docs page's test fails
 * instead (.ci/run installs it).
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Whether Chromium is installed; when not, says which test file skips. */
export function chromiumInstalled(testFile: string): boolean {
  if (existsSync(CHROMIUM)) return true;
  process.stderr.write(
    `${testFile}: SKIPPED, no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)\n`,
  );
  return false;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}
