/**
 * `prfleet webhooks add|list|remove`: webhooks through the running server (FleetService AddWebhook,
 * ListWebhooks, RemoveWebhook; admin). The secret is sent once and never shown again (list shows its
 * fingerprint).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '@commander-js/extra-typings';
import {
  EventKind,
  eventKindFromJSON,
  eventKindToJSON,
  type Webhook,
} from '../gen/prfleet/v1/events.js';
import { CliFailure } from './errors.js';
import { ExitCode } from './exit-codes.js';
import { collect } from './fleet-flags.js';
import { stringifyJson } from './json.js';
import { parseUint32 } from './parse.js';
import { plainTable } from './render.js';
import type { Cli } from './runner.js';
import { KIND_NAMES } from './watch.js';

function kindName(kind: EventKind): string {
  return eventKindToJSON(kind)
    .replace(/^EVENT_KIND_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

/** `prout,unit-attention` (repeatable): event kinds. */
function parseKinds(value: string, previous: EventKind[] = []): EventKind[] {
  const kinds = value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '')
    .map((v) => {
      const kind = eventKindFromJSON(`EVENT_KIND_${v.toUpperCase().replace(/-/g, '_')}`);
      if (kind === EventKind.UNRECOGNIZED || kind === EventKind.EVENT_KIND_UNSPECIFIED)
        throw new InvalidArgumentError(
          `unknown event kind ${JSON.stringify(v.slice(0, 40))} (one of ${KIND_NAMES.join(', ')})`,
        );
      return kind;
    });
  return [...previous, ...kinds];
}

function parseCursor(value: string): bigint {
  if (!/^\d{1,19}$/.test(value)) throw new InvalidArgumentError('not a cursor (a number)');
  return BigInt(value);
}

/** One webhook in the CLI's JSON conventions: kinds as words, counters as numbers, never a secret. */
export function webhookJson(w: Webhook): Record<string, unknown> {
  return {
    id: w.id,
    url: w.url,
    events: (w.filter?.kinds ?? []).map(kindName),
    ...(w.filter?.site ? { site: w.filter.site } : {}),
    ...(w.filter?.loaderIds.length ? { loaders: w.filter.loaderIds } : {}),
    ...(w.filter?.luIds.length ? { lus: w.filter.luIds } : {}),
    ...(w.filter?.agentIds.length ? { agents: w.filter.agentIds } : {}),
    secretFingerprint: w.secretFingerprint,
    description: w.description,
    createdBy: w.createdBy,
    createdAt: w.createdAt,
    cursor: String(w.cursor),
    delivered: Number(w.delivered),
    failedAttempts: Number(w.failedAttempts),
    deadLettered: Number(w.deadLettered),
    lastError: w.lastError,
    ...(w.lastDeliveredAt === undefined ? {} : { lastDeliveredAt: w.lastDeliveredAt }),
    deadLetters: w.deadLetters.map((d) => ({
      cursor: String(d.cursor),
      kind: kindName(d.kind),
      attempts: d.attempts,
      lastError: d.lastError,
      firstAttemptAt: d.firstAttemptAt,
      deadAt: d.deadAt,
    })),
  };
}

/** Webhooks as a table, then each one's dead letters. */
export function renderWebhooks(webhooks: readonly Webhook[]): string {
  if (webhooks.length === 0) return 'No webhooks.';
  const table = plainTable({
    head: ['id', 'url', 'events', 'secret', 'cursor', 'delivered', 'failed', 'dead', 'last error'],
  });
  for (const w of webhooks) {
    const kinds = w.filter?.kinds.map(kindName).join(',') || 'all';
    table.push([
      w.id,
      w.url,
      kinds,
      `sha256:${w.secretFingerprint}`,
      String(w.cursor),
      String(w.delivered),
      String(w.failedAttempts),
      String(w.deadLettered),
      w.lastError,
    ]);
  }
  const lines = [table.toString()];
  for (const w of webhooks) {
    if (w.deadLetters.length === 0) continue;
    lines.push('', `dead letters of ${w.id} (newest first):`);
    for (const d of w.deadLetters)
      lines.push(
        `  cursor ${d.cursor}  ${kindName(d.kind)}  ${d.attempts} attempts  since ${d.firstAttemptAt?.toISOString() ?? '-'}  gave up ${d.deadAt?.toISOString() ?? '-'}: ${d.lastError}`,
      );
  }
  return lines.join('\n');
}

/** The secret from --secret, --secret-file or PRFLEET_WEBHOOK_SECRET (in that order). */
function secretOf(
  opts: { secret?: string | undefined; secretFile?: string | undefined },
  env: NodeJS.ProcessEnv,
): string {
  if (opts.secret !== undefined) return opts.secret;
  if (opts.secretFile !== undefined) return readFileSync(opts.secretFile, 'utf8').trim();
  const fromEnv = env['PRFLEET_WEBHOOK_SECRET'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  throw new InvalidArgumentError(
    'a signing secret is needed: --secret, --secret-file or PRFLEET_WEBHOOK_SECRET (e.g. openssl rand -hex 32)',
  );
}

type Group = ReturnType<Cli['program']['command']>;

function registerAdd(cli: Cli, webhooks: Group): void {
  webhooks
    .command('add')
    .description('add a webhook: matching events are POSTed to URL, signed with the secret')
    .argument('<url>', 'receiver URL (https)')
    .option(
      '--events <kinds>',
      `event kinds, comma-separated (default all): ${KIND_NAMES.join(', ')}`,
      parseKinds,
    )
    .option(
      '--secret <secret>',
      'HMAC-SHA256 signing secret, 16+ bytes (visible to ps: prefer --secret-file)',
    )
    .option(
      '--secret-file <file>',
      'read the secret from this file (env PRFLEET_WEBHOOK_SECRET also works)',
    )
    .option('--site <site>', 'only events of agents of this site, or of LUs they see')
    .option('--loader <id>', 'only events of LUs of this loader (repeatable)', collect)
    .option('--lu <id>', 'only events of this LU (repeatable)', collect)
    .option('--agent <id>', 'only events of this agent (repeatable)', collect)
    .option('--description <text>', 'a note for people')
    .option(
      '--after <cursor>',
      'also deliver retained events after this cursor (default: from now)',
      parseCursor,
    )
    .action(async (url, opts) => {
      await cli.fleet(async (client, output) => {
        let secret: string;
        try {
          secret = secretOf(opts, cli.io.env ?? process.env);
        } catch (error) {
          throw new CliFailure(
            'USAGE',
            (error as Error).message,
            'give the signing secret with --secret-file <file> or PRFLEET_WEBHOOK_SECRET; nothing was sent',
            ExitCode.USAGE,
          );
        }
        const { webhook } = await client.addWebhook({
          url,
          secret,
          description: opts.description ?? '',
          afterCursor: opts.after,
          filter: {
            kinds: opts.events ?? [],
            site: opts.site ?? '',
            loaderIds: opts.loader ?? [],
            luIds: opts.lu ?? [],
            agentIds: opts.agent ?? [],
          },
        });
        if (webhook === undefined) return 1;
        cli.io.stdout(
          output === 'json'
            ? `${stringifyJson(webhookJson(webhook))}\n`
            : `added webhook ${webhook.id} → ${webhook.url} (secret sha256:${webhook.secretFingerprint}, events after cursor ${webhook.cursor})\n`,
        );
        return 0;
      });
    });
}

function registerList(cli: Cli, webhooks: Group): void {
  webhooks
    .command('list')
    .description('webhooks, their delivery state and dead letters (never secrets)')
    .option('--id <id>', 'only this webhook')
    .option(
      '--dead-letters <n>',
      'dead letters to show per webhook, newest first (default 10)',
      parseUint32,
    )
    .action(async (opts) => {
      await cli.fleet(async (client, output) => {
        const { webhooks: list } = await client.listWebhooks({
          id: opts.id ?? '',
          deadLetters: opts.deadLetters ?? 10,
        });
        cli.io.stdout(
          `${output === 'json' ? stringifyJson({ webhooks: list.map(webhookJson) }) : renderWebhooks(list)}\n`,
        );
        return 0;
      });
    });
}

function registerRemove(cli: Cli, webhooks: Group): void {
  webhooks
    .command('remove')
    .description('remove a webhook (deliveries to it stop; its dead letters go too)')
    .argument('<id>', 'webhook id')
    .action(async (id) => {
      await cli.fleet(async (client, output) => {
        const { webhook } = await client.removeWebhook({ id });
        cli.io.stdout(
          output === 'json'
            ? `${stringifyJson(webhook === undefined ? { id } : webhookJson(webhook))}\n`
            : `removed webhook ${id}${webhook === undefined ? '' : ` (${webhook.url})`}\n`,
        );
        return 0;
      });
    });
}

/** Adds `prfleet webhooks add|list|remove`. */
export function registerWebhookCommands(cli: Cli): void {
  const webhooks = cli.program
    .command('webhooks')
    .description('POST fleet events to URLs, signed (admin role; docs/events.md)');
  registerAdd(cli, webhooks);
  registerList(cli, webhooks);
  registerRemove(cli, webhooks);
}
