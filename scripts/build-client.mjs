// `npm run build:client`: the stream client for a frontend elsewhere (platform/build-client.ts), through tsx.
import { relative } from "node:path";
import { register } from "tsx/esm/api";

register();
const { buildClient } = await import("../platform/build-client.ts");
const files = await buildClient();
process.stderr.write(
  `build: the stream client in dist/client (${files.map((f) => relative("dist/client", f)).join(", ")})\n`,
);
