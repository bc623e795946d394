#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import {
  createFileTokenStore,
  createToken,
  MAX_TOKEN_LIFETIME_DAYS,
  type TokenRecord,
  type TokenStore,
} from '../server/auth/tokens.js';
import { parseRole, ROLES } from '../server/auth/roles.js';
import { storeConfigFromEnv, storeOptionsOf } from '../server/config.js';
import {
  openStore,
  StoreLockedError,
  type Store,
  type StoreOptions,
} from '../server/store/index.js';
import { createDbTokenStore } from '../server/store/tokens.js';
import { isMainModule } from './main-module.js';

/** Conventional token file name, for `--file` (env PRFLEET_TOKENS_FILE, the same variable the server reads). */
export const DEFAULT_TOKENS_FILE = 'prfleet-tokens.json';

/** How `prfleet-tokens` reaches the tokens; tests inject a store. */
export interface TokensProgramDeps {
  /** Environment for the database location (DATABASE_URL, PRFLEET_DATA_DIR, PRFLEET_DB_SCHEMA, PRFLEET_STORE, PRFLEET_TOKENS). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Opens the durable store. @default openStore (migrates: creates the token table when missing) */
  readonly openStore?: (options: StoreOptions) => Promise<Store>;
}

/** The where-flags every subcommand takes. */
interface WhereFlags {
  file?: string;
  database?: true;
  databaseUrl?: string;
  dataDir?: string;
  schema?: string;
}

/**
 * Runs `body` on the token store the server would use: `--file` (or PRFLEET_TOKENS_FILE) → that file;
 * otherwise (or with `--database`) the durable store located like the server's (flags, then DATABASE_URL /
 * PRFLEET_DATA_DIR / PRFLEET_DB_SCHEMA). Closes the store afterwards. Returns a description of where, for errors.
 */
async function withTokenStore<T>(
  flags: WhereFlags,
  deps: TokensProgramDeps,
  body: (store: TokenStore, where: string) => Promise<T>,
): Promise<T> {
  const env = deps.env ?? process.env;
  const envFile = env['PRFLEET_TOKENS_FILE'] === '' ? undefined : env['PRFLEET_TOKENS_FILE'];
  const dbFlags =
    flags.databaseUrl !== undefined || flags.dataDir !== undefined || flags.schema !== undefined;
  if (flags.file !== undefined && (flags.database === true || dbFlags)) {
    throw new Error(
      '--file and --database/--database-url/--data-dir/--schema exclude each other: pick one token store',
    );
  }
  const wantsFile =
    flags.file !== undefined ||
    (flags.database !== true &&
      !dbFlags &&
      (env['PRFLEET_TOKENS'] === 'file' ||
        (env['PRFLEET_TOKENS'] !== 'database' && envFile !== undefined)));
  if (wantsFile) {
    const file = flags.file ?? envFile;
    if (file === undefined)
      throw new Error('PRFLEET_TOKENS=file needs --file or PRFLEET_TOKENS_FILE');
    return body(createFileTokenStore(file), `token file ${file}`);
  }
  const fromEnv = storeConfigFromEnv({
    ...env,
    ...(flags.databaseUrl === undefined
      ? {}
      : { DATABASE_URL: flags.databaseUrl, PRFLEET_STORE: 'postgres' }),
    ...(flags.dataDir === undefined
      ? {}
      : { PRFLEET_DATA_DIR: flags.dataDir, DATABASE_URL: '', PRFLEET_STORE: 'pglite' }),
    ...(flags.schema === undefined ? {} : { PRFLEET_DB_SCHEMA: flags.schema }),
  });
  if (fromEnv.kind === 'memory') {
    throw new Error(
      'PRFLEET_STORE=memory keeps no tokens: pass --file, --database-url or --data-dir',
    );
  }
  const options = storeOptionsOf(fromEnv);
  const where =
    fromEnv.kind === 'postgres'
      ? 'the PostgreSQL token table'
      : `the token table in ${fromEnv.dataDir}`;
  let store: Store;
  try {
    store = await (deps.openStore ?? openStore)(options);
  } catch (error) {
    if (error instanceof StoreLockedError) {
      throw new Error(
        `${error.message}: a running prfleet-server holds the embedded database, so tokens cannot be changed beside it. Stop the server for the change, or run the servers on PostgreSQL (DATABASE_URL), where the tool works while they run`,
        { cause: error },
      );
    }
    throw error;
  }
  try {
    return await body(createDbTokenStore(store.db, { cacheMs: 0 }), where);
  } finally {
    await store.close();
  }
}

/** Adds the flags choosing the token store. */
function withWhere<O extends Record<string, unknown>, G extends Record<string, unknown>>(
  command: Command<[], O, G>,
) {
  return command
    .option(
      '--file <path>',
      'token file instead of the database (default: PRFLEET_TOKENS_FILE when set)',
    )
    .option('--database', "the server's durable store (default unless PRFLEET_TOKENS_FILE is set)")
    .option('--database-url <url>', 'PostgreSQL (default: DATABASE_URL)')
    .option(
      '--data-dir <dir>',
      'embedded PGlite data directory (default: PRFLEET_DATA_DIR, else .prfleet/data)',
    )
    .option('--schema <name>', 'database schema (default: PRFLEET_DB_SCHEMA)');
}

/** Days in (0, CreateToken's 10 years]: 1e308 days was "Invalid time value", 1e7 a token valid until 29406. */
function positiveDays(value: string): number {
  const n = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  if (!(n > 0 && n <= MAX_TOKEN_LIFETIME_DAYS))
    throw new InvalidArgumentError(
      `expected a number of days > 0 and at most ${MAX_TOKEN_LIFETIME_DAYS} (10 years)`,
    );
  return n;
}

function describe(record: TokenRecord, now: Date): Record<string, string> {
  const state =
    record.revokedAt !== undefined
      ? 'revoked'
      : record.expiresAt !== undefined && Date.parse(record.expiresAt) <= now.getTime()
        ? 'expired'
        : 'active';
  return {
    id: record.id,
    name: record.name,
    role: record.role,
    state,
    createdAt: record.createdAt,
    ...(record.expiresAt === undefined ? {} : { expiresAt: record.expiresAt }),
    ...(record.revokedAt === undefined ? {} : { revokedAt: record.revokedAt }),
  };
}

/**
 * `prfleet-tokens`: bearer tokens for ControlService/FleetService clients, stored hashed, in the server's
 * durable store (the `auth_tokens` table, shared by every instance on one database) or in a JSON file
 * (`--file` / PRFLEET_TOKENS_FILE: a server without a durable store).
 *   create --role viewer|operator|admin --name alice [--expires-days n]   prints the token once
 *   list                                                                  ids, names, roles, state
 *   revoke --id <id>
 */
export function createTokensProgram(
  print: (line: string) => void = (l) => console.log(l),
  deps: TokensProgramDeps = {},
) {
  const program = new Command('prfleet-tokens').description(
    'manage ControlService bearer tokens (stored hashed) in the server database or a token file',
  );
  withWhere(program.command('create'))
    .description('create a token and print it once (it cannot be shown again)')
    .addOption(new Option('--role <role>', 'role').choices(ROLES).makeOptionMandatory())
    .requiredOption(
      '--name <name>',
      'who holds the token (person or automation; key registry owner for operators)',
    )
    .option('--expires-days <n>', 'lifetime in days (default: no expiry)', positiveDays)
    .option('--json', 'print JSON instead of the bare token', false)
    .action(async (o) => {
      await withTokenStore(o, deps, async (store) => {
        const { token, record } = await createToken(store, {
          name: o.name,
          role: parseRole(o.role),
          ...(o.expiresDays === undefined ? {} : { expiresInMs: o.expiresDays * 86_400_000 }),
        });
        print(o.json ? JSON.stringify({ token, ...describe(record, new Date()) }) : token);
      });
    });
  withWhere(program.command('list'))
    .description('list tokens (never their secrets)')
    .action(async (o) => {
      await withTokenStore(o, deps, async (store) => {
        const now = new Date();
        for (const record of await store.list()) print(JSON.stringify(describe(record, now)));
      });
    });
  withWhere(program.command('revoke'))
    .description('revoke a token by id (servers refuse it within a second)')
    .requiredOption('--id <id>', 'token id (12 hex digits, the part after prf_)')
    .action(async (o) => {
      await withTokenStore(o, deps, async (store, where) => {
        if (!(await store.revoke(o.id))) throw new Error(`no token with id ${o.id} in ${where}`);
        print(JSON.stringify({ id: o.id, state: 'revoked' }));
      });
    });
  return program;
}

if (isMainModule(import.meta.url)) {
  try {
    await createTokensProgram().parseAsync(process.argv);
  } catch (error) {
    console.error(`prfleet-tokens: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
