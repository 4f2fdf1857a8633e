// The repository's files, for the tests that check docs and configuration against the code.
import { readdirSync, statSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";

export const REPO_ROOT = resolve(import.meta.dirname, "..");

/** What is never the repository's own: git's, installed, built or local data. */
const NEVER = [".git", "node_modules", "dist", ".data", ".sst"];

/** Every file under the root, as a path from it with "/", leaving out NEVER and the folder names in `skip`. */
export function repositoryFiles(skip: readonly string[] = []): string[] {
  const skipped = new Set([...NEVER, ...skip]);
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      if (skipped.has(name)) return [];
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return walk(path);
      return [relative(REPO_ROOT, path).split(sep).join("/")];
    });
  return walk(REPO_ROOT);
}
