// `npm run build`: the bundles the processes run (platform/build.ts), through tsx since the build reads the
// component table from TypeScript. `npm run build:client` (`--client`): the stream client for a frontend elsewhere.
import { relative } from "node:path";
import { register } from "tsx/esm/api";

register();
const { buildBundles, buildClient } = await import("../platform/build.ts");
if (process.argv.includes("--client")) {
  const files = await buildClient();
  process.stderr.write(
    `build: the stream client in dist/client (${files.map((f) => relative("dist/client", f)).join(", ")})\n`,
  );
} else {
  const ms = await buildBundles();
  process.stderr.write(`build: dist/ bundled in ${Math.round(ms)} ms\n`);
}
