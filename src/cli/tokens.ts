/**
 * `prfleet tokens create|list|revoke`: client tokens through the running server (ControlService CreateToken,
 * ListTokens, RevokeToken; admin). Unlike the `prfleet-tokens` tool, which writes the database or token file
 * itself, this works while the server holds its embedded PGlite store open.
 */
import { InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { msToDuration } from '../common/command.js';
import { TokenRole, type TokenInfo } from '../gen/prfleet/v1/control.js';
import { stringifyJson } from './json.js';
import { plainTable } from './render.js';
import { CliFailure } from './errors.js';
import { ExitCode } from './exit-codes.js';
import type { Cli } from './runner.js';

const ROLES = {
  viewer: TokenRole.TOKEN_ROLE_VIEWER,
  operator: TokenRole.TOKEN_ROLE_OPERATOR,
  admin: TokenRole.TOKEN_ROLE_ADMIN,
} as const;

/** `90d`, `12h`, `30m`: a token lifetime in ms. */
export function parseLifetimeMs(value: string): number {
  const match = /^(\d+)(d|h|m)$/.exec(value.trim());
  if (match?.[1] !== undefined && Number(match[1]) > 0) {
    const unit = match[2] === 'd' ? 86_400_000 : match[2] === 'h' ? 3_600_000 : 60_000;
    return Number(match[1]) * unit;
  }
  throw new InvalidArgumentError(`${value} is not a lifetime (e.g. 90d, 12h, 30m)`);
}

function roleName(role: TokenRole): string {
  return Object.entries(ROLES).find(([, r]) => r === role)?.[0] ?? 'unknown';
}

function stateOf(token: TokenInfo, now = new Date()): string {
  if (token.revokedAt !== undefined) return 'revoked';
  if (token.expiresAt !== undefined && token.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'active';
}

/** One token in the CLI's JSON conventions (role and state as words). */
function tokenJson(token: TokenInfo): Record<string, unknown> {
  return {
    id: token.id,
    name: token.name,
    role: roleName(token.role),
    state: stateOf(token),
    createdAt: token.createdAt,
    ...(token.expiresAt === undefined ? {} : { expiresAt: token.expiresAt }),
    ...(token.revokedAt === undefined ? {} : { revokedAt: token.revokedAt }),
  };
}

/** Table of tokens (never secrets). */
export function renderTokens(tokens: readonly TokenInfo[]): string {
  if (tokens.length === 0) return 'No client tokens.';
  const table = plainTable({
    head: ['id', 'name', 'role', 'state', 'created', 'expires'],
  });
  for (const t of tokens) {
    table.push([
      t.id,
      t.name,
      roleName(t.role),
      stateOf(t),
      t.createdAt?.toISOString() ?? '',
      t.expiresAt?.toISOString() ?? 'never',
    ]);
  }
  return table.toString();
}

type Group = ReturnType<Cli['program']['command']>;

function registerCreate(cli: Cli, tokens: Group): void {
  tokens
    .command('create')
    .description('issue a token and print it once (the server keeps only a salted hash)')
    .requiredOption('--name <name>', 'who holds it (key registry owner for operators)')
    .addOption(
      new Option('--role <role>', 'what it may do')
        .choices(Object.keys(ROLES) as (keyof typeof ROLES)[])
        .makeOptionMandatory(),
    )
    .option('--expires <lifetime>', 'lifetime, e.g. 90d, 12h (default: no expiry)', parseLifetimeMs)
    .action(async (opts: { name: string; role: keyof typeof ROLES; expires?: number }) => {
      await cli.control(async (client, output) => {
        const { token, info } = await client.createToken({
          name: opts.name,
          role: ROLES[opts.role],
          expiresIn: opts.expires === undefined ? undefined : msToDuration(opts.expires),
        });
        cli.io.stdout(
          output === 'json'
            ? `${stringifyJson({ token, ...(info === undefined ? {} : tokenJson(info)) })}\n`
            : `${token}\n`,
        );
        if (output !== 'json')
          cli.io.stderr('prfleet: this is the only time the token is shown: store it now\n');
        return ExitCode.OK;
      });
    });
}

function registerList(cli: Cli, tokens: Group): void {
  tokens
    .command('list')
    .description('list tokens: id, name, role, state (never their secrets)')
    .action(async () => {
      await cli.control(async (client, output) => {
        const { tokens: list } = await client.listTokens({});
        cli.io.stdout(
          `${output === 'json' ? stringifyJson({ tokens: list.map(tokenJson) }) : renderTokens(list)}\n`,
        );
        return ExitCode.OK;
      });
    });
}

function registerRevoke(cli: Cli, tokens: Group): void {
  tokens
    .command('revoke')
    .description(
      'revoke a token by id; every server sharing the database refuses it within a second',
    )
    .argument('<id>', 'token id (12 hex digits, the part after prf_)')
    .requiredOption('--reason <text>', 'why (logged with your name)')
    .action(async (id: string, opts: { reason: string }) => {
      await cli.control(async (client, output) => {
        const { info } = await client.revokeToken({ id, reason: opts.reason });
        if (info?.revokedAt === undefined)
          throw new CliFailure(
            'NOT_REVOKED',
            `the server did not report ${id} as revoked`,
            'check with `prfleet tokens list`',
            ExitCode.USAGE,
          );
        cli.io.stdout(
          output === 'json'
            ? `${stringifyJson(tokenJson(info))}\n`
            : `revoked ${id} (${info.name}, ${roleName(info.role)})\n`,
        );
        return ExitCode.OK;
      });
    });
}

/** Adds `tokens create|list|revoke` (global `--server`/`--output` and transport options). */
export function registerTokenCommands(cli: Cli): void {
  const tokens = cli.program
    .command('tokens')
    .description('client tokens through the running server (admin role)');
  registerCreate(cli, tokens);
  registerList(cli, tokens);
  registerRevoke(cli, tokens);
}
