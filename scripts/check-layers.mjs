// The layer table of docs/architecture.md, checked with the compiler's own module resolution: every import (static,
// dynamic, type-only, re-export) of every file tsconfig.json compiles is resolved as tsc resolves it and the part
// it lands in must be one its importer's part may use. `make build` and `make lint` run it, so a forbidden import
// fails the build. (Rules inside src/server — the command path below its callers — stay eslint rules.)
import { relative } from 'node:path';
import ts from 'typescript';

/** The parts, first match wins: [part, path prefix]. */
const PARTS = [
  ['profiles', 'src/scsi/profiles.ts'],
  ['codec', 'src/scsi/'],
  ['emulator', 'src/emulator/'],
  ['gen', 'src/gen/'],
  ['common', 'src/common/'],
  ['server', 'src/server/'],
  ['cli', 'src/cli/'],
  ['conformance', 'src/conformance/'],
  ['tools', 'src/tools/'],
  ['demo', 'src/demo/'],
  ['agent', 'agent/'],
  ['bench', 'bench/'],
  ['test', 'test/'],
];

/** @type {Record<string, string[]>} What each part may import besides itself (docs/architecture.md, "The parts"). */
const MAY_IMPORT = {
  codec: [],
  profiles: ['codec'],
  emulator: ['codec', 'profiles'],
  gen: [],
  common: ['codec', 'profiles', 'gen'],
  // The agent meets the server on the stream only; it runs the emulator for emulated fabrics.
  agent: ['common', 'codec', 'profiles', 'gen', 'emulator'],
  server: ['common', 'codec', 'profiles', 'gen'],
  // The CLI is a gRPC client; `prfleet replay` re-runs a recording against the emulator.
  cli: ['common', 'codec', 'profiles', 'gen', 'emulator'],
  conformance: ['codec', 'profiles', 'emulator'],
  tools: ['server', 'cli', 'common', 'codec', 'profiles', 'gen'],
  demo: ['server', 'agent', 'cli', 'common', 'codec', 'profiles', 'gen', 'emulator', 'conformance'],
  // bench/lio.ts boots the LIO test VM with the launcher that lives beside its tests.
  bench: [
    'server',
    'agent',
    'cli',
    'common',
    'codec',
    'profiles',
    'gen',
    'emulator',
    'demo',
    'test',
  ],
  test: PARTS.map(([name]) => name),
};

const root = process.cwd();
const partOf = (/** @type {string} */ file) => {
  const path = relative(root, file);
  return PARTS.find(([, prefix]) => path === prefix || path.startsWith(prefix))?.[0];
};

const config = ts.getParsedCommandLineOfConfigFile(
  'tsconfig.json',
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (/** @type {ts.Diagnostic} */ d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  },
);
const violations = [];
let imports = 0;
for (const file of config.fileNames) {
  const from = partOf(file);
  if (from === undefined) continue;
  const { importedFiles } = ts.preProcessFile(ts.sys.readFile(file) ?? '', true, true);
  for (const { fileName: specifier } of importedFiles) {
    const resolved = ts.resolveModuleName(specifier, file, config.options, ts.sys).resolvedModule;
    if (resolved === undefined || resolved.isExternalLibraryImport) continue;
    imports++;
    const to = partOf(resolved.resolvedFileName);
    if (to === undefined || to === from || (MAY_IMPORT[from] ?? []).includes(to)) continue;
    violations.push(`${relative(root, file)}: imports ${specifier} (${from} may not import ${to})`);
  }
}
if (violations.length > 0) {
  console.error(
    `layer violations (docs/architecture.md, scripts/check-layers.mjs):\n  ${violations.join('\n  ')}`,
  );
  process.exit(1);
}
console.log(
  `layers: ${imports} imports across ${config.fileNames.length} files follow docs/architecture.md`,
);
