// `npm run build`: the bundles the processes run (platform/build.ts), through tsx since the build reads the
// component table from TypeScript.
import { register } from "tsx/esm/api";

register();
const { buildBundles } = await import("../platform/build.ts");
const ms = await buildBundles();
process.stderr.write(`build: dist/ bundled in ${Math.round(ms)} ms\n`);
