import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", ".data/**", ".sst/**"],
    testTimeout: 60_000,
    // The JSON file lets CI print a plain "N passed, N failed" line (scripts/test-summary.mjs).
    reporters: ["default", ["json", { outputFile: ".data/test-results.json" }]],
  },
});
