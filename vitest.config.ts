import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", ".data/**", ".sst/**"],
    testTimeout: 60_000,
    // Finds or starts Redis and Postgres for the run and hands them to the tests as REDIS_URL / TEST_DATABASE_ADMIN_URL.
    globalSetup: ["platform/testing/global-setup.ts"],
    // The JSON file lets CI print a plain "N passed, N failed" line (scripts/test-summary.mjs).
    reporters: ["default", ["json", { outputFile: ".data/test-results.json" }]],
  },
});
