// Type-aware lint. The pure parts (engine core, shared contract) get extra rules that keep them free of
// I/O, clock, randomness and environment: replay must reproduce the exact same state.
import { existsSync } from "node:fs";
import tseslint from "typescript-eslint";

const impureSyntax = [
  {
    selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
    message: "The engine core reads no clock: time comes from the input id.",
  },
  {
    selector: "NewExpression[callee.name='Date'][arguments.length=0]",
    message: "The engine core reads no clock: time comes from the input id.",
  },
  {
    selector: "MemberExpression[object.name='Math'][property.name='random']",
    message: "The engine core uses no randomness.",
  },
  { selector: "MemberExpression[object.name='performance']", message: "The engine core reads no clock." },
];

const sstFiles = ["sst.config.ts", "infra/sst/**/*.ts"];

export default tseslint.config(
  { ignores: ["node_modules/**", ".data/**", ".sst/**", "sst-env.d.ts", "coverage/**", "dist/**"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ["*.js", "scripts/*.mjs"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      eqeqeq: "error",
    },
  },
  { files: ["**/*.js", "**/*.mjs"], ...tseslint.configs.disableTypeChecked },
  // sst.config.ts and infra/sst/ use SST's globals, typed only by SST's generated types (tsconfig.infra.json). With
  // those installed (npm run infra:types) they are linted type-aware against them; without, linted without types,
  // since every `sst.*` would otherwise read as an error type.
  existsSync(new URL(".sst/platform/config.d.ts", import.meta.url))
    ? {
        files: sstFiles,
        languageOptions: { parserOptions: { projectService: false, project: "./tsconfig.infra.json" } },
      }
    : { files: sstFiles, ...tseslint.configs.disableTypeChecked },
  // The stream client runs in browser bundles too: it is handed a WebSocket and a fetch, and imports nothing of
  // Node or of the server side, types included (views.ts copies the server's shapes). Its tests and their fake
  // server run in Node.
  {
    files: ["client/**/*.ts"],
    ignores: ["**/*.test.ts", "client/testing/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["node:*", "fs", "net", "http", "https", "crypto", "os", "child_process", "ws", "ioredis", "pg"],
              message: "The stream client runs in browsers: it is handed a WebSocket and a fetch.",
            },
            {
              group: ["../*"],
              message:
                "Nothing from the rest of the repository, types included: a frontend elsewhere builds the client alone (npm run build:client).",
            },
          ],
        },
      ],
      "no-restricted-globals": [
        "error",
        { name: "process", message: "Not in browsers." },
        { name: "Buffer", message: "Not in browsers: use TextDecoder or Uint8Array." },
        { name: "require", message: "Not in browsers." },
      ],
    },
  },
  {
    files: ["engine/core/**/*.ts", "contract/**/*.ts"],
    ignores: ["**/*.test.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: [
                "node:*",
                "fs",
                "net",
                "http",
                "crypto",
                "os",
                "child_process",
                "ioredis",
                "pg",
                "@neondatabase/*",
                "@upstash/*",
                "ws",
                "hono",
                "hono/*",
              ],
              message: "Pure modules do no I/O.",
            },
          ],
        },
      ],
      "no-restricted-globals": [
        "error",
        { name: "process", message: "Pure modules read no environment." },
        { name: "setTimeout", message: "Pure modules schedule nothing." },
        { name: "setInterval", message: "Pure modules schedule nothing." },
        { name: "fetch", message: "Pure modules do no I/O." },
        { name: "crypto", message: "Pure modules use no randomness." },
        { name: "console", message: "Pure modules do not log; they return outputs." },
      ],
      "no-restricted-syntax": ["error", ...impureSyntax],
    },
  },
);
