// Type-checks sst.config.ts and infra/sst/ against SST's own types (tsconfig.infra.json), with the project's strict
// settings. Those types are generated into .sst/platform by `npm run infra:types` (SST's platform sources plus
// @pulumi/aws, ~300 MB, from the npm registry only). A fresh clone does not have them, and `npm test` must pass
// there, so without them this says what was not checked and passes.
//
// SST's platform is TypeScript source written for looser settings than ours (no exactOptionalPropertyTypes,
// verbatimModuleSyntax, …), so only diagnostics in the project's own files are reported: ours are checked strictly
// against SST's declared types, SST's implementation is SST's business.
import { existsSync } from "node:fs";
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = fileURLToPath(new URL("..", import.meta.url));
if (!existsSync(resolve(root, ".sst/platform/config.d.ts"))) {
  process.stdout.write(
    "typecheck: sst.config.ts and infra/sst/ NOT type-checked: SST's types are not installed here " +
      "(npm run infra:types; see infra/README.md)\n",
  );
  process.exit(0);
}

const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => fail([d]) };
const config = ts.getParsedCommandLineOfConfigFile(resolve(root, "tsconfig.infra.json"), {}, host);
const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
const ours = program.getSourceFiles().filter((f) => {
  const path = relative(root, f.fileName);
  return !path.startsWith("..") && !path.startsWith(".sst") && !path.includes("node_modules");
});
const diagnostics = [
  ...config.errors,
  ...program.getOptionsDiagnostics(),
  ...program.getGlobalDiagnostics(),
  ...ours.flatMap((f) => [...program.getSyntacticDiagnostics(f), ...program.getSemanticDiagnostics(f)]),
];
if (diagnostics.length > 0) fail(diagnostics);
process.stdout.write(`typecheck: sst.config.ts and infra/ checked against SST's types (${ours.length} files)\n`);

function fail(list) {
  const formatHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(list, formatHost));
  process.exit(1);
}
