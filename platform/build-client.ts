/**
 * The stream client for a frontend outside this repository (`npm run build:client`), apart from build.ts: the
 * image builds the processes' bundles without the TypeScript compiler this needs (a dev dependency).
 */
import { join, resolve, sep } from "node:path";
import { build } from "esbuild";
import ts from "typescript";
import { DIST_DIR, ROOT } from "./build.ts";

/**
 * `stream-client.js`, one ES module with nothing to install, for browsers and Node, and its type declarations
 * beside it (`stream-client.d.ts` and the files it names). The client imports nothing outside client/ (lint keeps it so), so the declarations
 * need nothing else either; a consumer's TypeScript needs the DOM library (or Node's types) for `AbortSignal` and
 * the like, which the client uses from its platform.
 */
export async function buildClient(outDir = join(DIST_DIR, "client")): Promise<string[]> {
  const entry = join(ROOT, "client", "stream-client.ts");
  await build({
    entryPoints: [entry],
    outfile: join(outDir, "stream-client.js"),
    bundle: true,
    platform: "neutral",
    format: "esm",
    target: "es2022",
    logLevel: "error",
  });
  const program = ts.createProgram([entry], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: [],
    strict: true,
    exactOptionalPropertyTypes: true,
    allowImportingTsExtensions: true,
    declaration: true,
    emitDeclarationOnly: true,
    rootDir: join(ROOT, "client"),
    outDir,
  });
  const written: string[] = [];
  const outside: string[] = [];
  const result = program.emit(undefined, (file, text) => {
    // A declaration from outside client/ would land beside its source, in the repository.
    if (!resolve(file).startsWith(resolve(outDir) + sep)) outside.push(file);
    else {
      written.push(file);
      ts.sys.writeFile(file, text);
    }
  });
  if (outside.length > 0) throw new Error(`the client imports from outside client/: ${outside.join(", ")}`);
  const problems = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (problems.length > 0) {
    const host = { getCanonicalFileName: (f: string) => f, getCurrentDirectory: () => ROOT, getNewLine: () => "\n" };
    throw new Error(`client declarations: ${ts.formatDiagnostics(problems, host)}`);
  }
  return [join(outDir, "stream-client.js"), ...written];
}
