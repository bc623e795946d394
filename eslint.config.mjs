// ESLint flat config (style.md §10): typescript-eslint recommendedTypeChecked with type information, the
// rules §10 adds, and the import rules inside parts (the layer table between parts: scripts/check-layers.mjs).
import tseslint from 'typescript-eslint';

/**
 * One row of style.md §2: files under `files` may not import what `patterns` match.
 * @param {string[]} files
 * @param {{ regex: string, message: string }[]} patterns
 */
const layer = (files, patterns) => ({
  files,
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
});

/**
 * Turns one rule off for the files listed, nothing else: violations found by the first lint run (2026-12-02) in
 * files other engineers were editing, left for the lead to fix. Delete a file (or the whole entry) once fixed.
 * Never list a layer rule (`no-restricted-imports`): a layer violation is fixed, not waived.
 * @param {string} rule
 * @param {string[]} files
 */
const pending = (rule, files) => ({ name: `pending/${rule}`, files, rules: { [rule]: 'off' } });

export default tseslint.config(
  {
    // src/gen is written only by `make gen` (ts-proto); the rest is build output or not ours.
    ignores: ['src/gen/**', 'dist/**', 'node_modules/**', 'coverage/**', '.prfleet/**', 'tmp/**'],
  },
  {
    files: ['**/*.ts', '**/*.mts', '**/*.cts', '**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      parserOptions: {
        // Each file gets the nearest tsconfig.json (src/scsi and src/emulator: their own, "types": []);
        // root files outside every tsconfig (vitest.config.ts, this file, scripts/) a default project.
        projectService: { allowDefaultProject: ['*.ts', '*.mjs', 'scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  ...tseslint.configs.recommendedTypeChecked,
  {
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // A `default:` is a deliberate fallback (exit codes, outcome texts); a switch without one must list
      // every member of the union or enum, ts-proto oneof `$case`s included (style.md §3).
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      // `_`-prefixed names are unused on purpose, as tsc's noUnusedLocals treats them; `{ a: _a, ...rest }` omits a.
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      'require-await': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },

  // The layer table between parts (codec, profiles, emulator, common, server, agent, cli, …) is checked with the
  // compiler's module resolution by scripts/check-layers.mjs (make build, make lint); what stays here are the
  // rules inside a part and on packages.
  // docs/architecture.md: the command path sits below its callers, and fleet PROUTs go through it.
  layer(
    ['src/server/commands/**'],
    [
      {
        regex:
          '^\\.\\./(fleet|control-service|command-session|agents/(service|stream|session-handler)|command-executor)',
        message: 'the command path sits below its callers.',
      },
    ],
  ),
  layer(
    ['src/server/fleet/**'],
    [
      {
        regex: '(^|/)router\\.js$',
        message:
          'the fleet engine sends every command through the command pipeline (src/server/commands): PROUTs by run, reads by read.',
      },
    ],
  ),
  layer(['src/cli/**'], [{ regex: '^koffi$', message: 'the CLI is a gRPC client.' }]),

  // ---- pending fixes (see `pending` above) ----
  // A needless assertion that names the generic's type argument; `import()` types of the optional koffi addon.
  pending('@typescript-eslint/no-unnecessary-type-assertion', [
    'src/server/redis-router/protocol.ts',
  ]),
  // `let x: T | undefined` assigned once later (a timer, a stop function set up after the handlers using it).
  pending('prefer-const', ['agent/sim.ts', 'src/server/router.ts']),
  // Tests: vitest's asymmetric matchers (expect.objectContaining/any/stringContaining) and JSON.parse are `any`.
  pending('@typescript-eslint/no-unsafe-assignment', [
    'test/auth/middleware.test.ts',
    'test/auth/store-tokens.test.ts',
    'test/cli/cli-server.test.ts',
    'test/e2e/contention.test.ts',
    'test/fleet/cuts.test.ts',
    'test/redis/redis-router.test.ts',
    'test/server/control-service.test.ts',
    'test/server/fleet-without-store.test.ts',
    'test/server/history-cli.test.ts',
    'test/server/store-wiring.test.ts',
    'test/store/key-layout.test.ts',
  ]),
  pending('@typescript-eslint/no-unsafe-member-access', [
    'test/auth/middleware.test.ts',
    'test/cli/cli-server.test.ts',
    'test/e2e/binaries.test.ts',
    'test/scale/multi-instance.test.ts',
  ]),
  pending('@typescript-eslint/no-unsafe-return', [
    'src/server/store/pg-db.ts', // pg.types.getTypeParser returns any
    'test/auth/middleware.test.ts',
    'test/cli/cli-offline.test.ts',
    'test/scale/multi-instance.test.ts',
  ]),
  pending('@typescript-eslint/no-unsafe-call', ['test/e2e/binaries.test.ts']),
  pending('@typescript-eslint/no-explicit-any', ['test/e2e/binaries.test.ts']),
  // reject(signal.reason) (typed any) and reject(caught unknown): not known to be an Error.
  pending('@typescript-eslint/prefer-promise-reject-errors', [
    'src/common/semaphore.ts',
    'src/server/journal.ts',
    'src/server/redis-router/redis-router.ts',
    'src/server/router.ts',
  ]),
  // An enum compared with a number literal (`phase === 2`, `type !== 0`) instead of its member.
  pending('@typescript-eslint/no-unsafe-enum-comparison', [
    'src/common/capabilities.ts',
    'test/scale/multi-instance.test.ts',
  ]),
  // A method taken off its object (ts-proto fromPartial, router factory, resolve/reject kept to wrap).
  pending('@typescript-eslint/unbound-method', [
    'src/common/service-definition.ts',
    'src/server/main.ts',
    'src/server/redis-router/redis-router.ts',
  ]),
  // String(unknown) could print [object Object].
  pending('@typescript-eslint/no-base-to-string', ['src/cli/json.ts']),
  // `await server.forceShutdown()`: nice-grpc's forceShutdown returns void.
  pending('@typescript-eslint/await-thenable', ['bench/fleet.ts']),
  // `throw this.closeError` where closeError is `unknown`.
  pending('@typescript-eslint/only-throw-error', ['src/common/async-queue.ts']),
);
