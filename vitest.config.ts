import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", ".data/**", ".sst/**"],
    // Integration and end-to-end tests share real Redis/Postgres servers; run files one at a time there.
    fileParallelism: true,
    testTimeout: 30_000,
  },
});
