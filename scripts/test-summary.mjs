// Prints vitest's result as one plain closing line ("N passed, N failed, N skipped") for CI logs.
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2] ?? ".data/test-results.json";
if (!existsSync(file)) {
  // .ci/run removes the file before npm test: no file means vitest did not run (a check before it failed) or died.
  console.log("tests: 0 passed, 1 failed (no test results were written: vitest did not run or did not finish)");
  process.exit(1);
}
const r = JSON.parse(readFileSync(file, "utf8"));
console.log(
  `tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests ?? 0)} skipped`,
);
process.exit(r.numFailedTests === 0 && r.numPassedTests > 0 ? 0 : 1);
