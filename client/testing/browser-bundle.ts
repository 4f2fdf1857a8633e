/** The client as a frontend's build would ship it: stream-client.ts and what it imports, one ES module for browsers. */
import { build } from "esbuild";

export async function browserBundle(): Promise<string> {
  const result = await build({
    entryPoints: [new URL("../stream-client.ts", import.meta.url).pathname],
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}
