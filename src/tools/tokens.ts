#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { createFileTokenStore, createToken, type TokenRecord } from '../server/auth/tokens.js';
import { parseRole, ROLES } from '../server/auth/roles.js';
import { isMainModule } from './main-module.js';

/** Default token file (env PRFLEET_TOKENS_FILE), the same variable the server reads. */
export const DEFAULT_TOKENS_FILE = 'prfleet-tokens.json';

function positiveDays(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number of days > 0');
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
 * `prfleet-tokens`: bearer tokens for ControlService clients, stored hashed in a JSON file.
 *   create --role viewer|operator|admin --name alice [--expires-days n]   prints the token once
 *   list                                                                  ids, names, roles, state
 *   revoke --id <id>
 */
export function createTokensProgram(print: (line: string) => void = (l) => console.log(l)) {
  const fileOption = () =>
    new Option('--file <path>', 'token file').env('PRFLEET_TOKENS_FILE').default(DEFAULT_TOKENS_FILE);
  const program = new Command('prfleet-tokens').description('manage ControlService bearer tokens (stored hashed)');
  program
    .command('create')
    .description('create a token and print it once (it cannot be shown again)')
    .addOption(new Option('--role <role>', 'role').choices(ROLES).makeOptionMandatory())
    .requiredOption('--name <name>', 'who holds the token (person or automation)')
    .option('--expires-days <n>', 'lifetime in days (default: no expiry)', positiveDays)
    .addOption(fileOption())
    .option('--json', 'print JSON instead of the bare token', false)
    .action(async (o) => {
      const store = createFileTokenStore(o.file);
      const { token, record } = await createToken(store, {
        name: o.name,
        role: parseRole(o.role),
        ...(o.expiresDays === undefined ? {} : { expiresInMs: o.expiresDays * 86_400_000 }),
      });
      print(o.json ? JSON.stringify({ token, ...describe(record, new Date()) }) : token);
    });
  program
    .command('list')
    .description('list tokens (never their secrets)')
    .addOption(fileOption())
    .action(async (o) => {
      const now = new Date();
      for (const record of await createFileTokenStore(o.file).list()) print(JSON.stringify(describe(record, now)));
    });
  program
    .command('revoke')
    .description('revoke a token by id')
    .requiredOption('--id <id>', 'token id (12 hex digits, the part after prf_)')
    .addOption(fileOption())
    .action(async (o) => {
      if (!(await createFileTokenStore(o.file).revoke(o.id))) throw new Error(`no token with id ${o.id} in ${o.file}`);
      print(JSON.stringify({ id: o.id, state: 'revoked' }));
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
