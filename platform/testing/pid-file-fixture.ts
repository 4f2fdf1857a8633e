/**
 * For platform/pid-file.test.ts: `node --import tsx pid-file-fixture.ts <file> start` writes its own pid into
 * `<file>` (as a dead run whose pid this one got again left it), then claims the file as npm start does, as the
 * script it runs. Prints "claimed" or the error; exit 0 or 2.
 */
import { writeFileSync } from "node:fs";
import { claimPidFile } from "../pid-file.ts";

const file = process.argv[2]!;
writeFileSync(file, String(process.pid));
try {
  claimPidFile(file, process.argv[1]!);
  process.stdout.write("claimed");
} catch (error) {
  process.stdout.write(String(error));
  process.exitCode = 2;
}
