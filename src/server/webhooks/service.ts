import type { CallContext } from 'nice-grpc-common';
import {
  EventKind,
  eventKindFromJSON,
  eventKindToJSON,
  Webhook,
  WebhookDeadLetter,
  type AddWebhookRequest,
  type AddWebhookResponse,
  type ListWebhooksRequest,
  type ListWebhooksResponse,
  type RemoveWebhookRequest,
  type RemoveWebhookResponse,
  type WebhookFilter,
} from '../../gen/prfleet/v1/events.js';
import { invalidArgument, notFound, quoteInput } from '../../common/errors.js';
import { defaultPrincipalOf } from '../history.js';
import type { EventLog } from '../events/types.js';
import { CursorAheadError, CursorExpiredError, cursorOf } from '../events/types.js';
import type {
  DeadLetterRecord,
  WebhookFilterRecord,
  WebhookRecord,
  WebhookStore,
} from './store.js';
import { checkWebhookSecret, checkWebhookUrl, WebhookInputError } from './url.js';

/** FleetService's webhook RPCs (admin; roles.ts). */
export interface WebhookRpcs {
  addWebhook(request: AddWebhookRequest, ctx: CallContext): Promise<AddWebhookResponse>;
  listWebhooks(request: ListWebhooksRequest): Promise<ListWebhooksResponse>;
  removeWebhook(request: RemoveWebhookRequest): Promise<RemoveWebhookResponse>;
}

/** What the RPCs need. */
export interface WebhookRpcDeps {
  readonly store: WebhookStore;
  readonly events: EventLog;
  readonly allowHttp: boolean;
  /** Told after a change, so this instance starts or stops delivering at once. */
  readonly changed: () => void;
}

/** Most dead letters one ListWebhooks returns per webhook. */
export const MAX_LISTED_DEAD_LETTERS = 1000;

const KNOWN_KINDS = new Set(
  Object.values(EventKind).filter((v): v is EventKind => typeof v === 'number' && Number(v) > 0),
);

function filterRecord(filter: WebhookFilter | undefined): WebhookFilterRecord {
  const kinds = filter?.kinds ?? [];
  const bad = kinds.findIndex((k) => !KNOWN_KINDS.has(k));
  if (bad >= 0)
    throw invalidArgument(`filter.kinds[${bad}]`, `${String(kinds[bad])} is not an event kind`);
  return {
    kinds: kinds.map((k) => eventKindToJSON(k)),
    site: filter?.site ?? '',
    loaderIds: filter?.loaderIds ?? [],
    luIds: filter?.luIds ?? [],
    agentIds: filter?.agentIds ?? [],
  };
}

/** A stored webhook as the API shows it: never the secret. */
export function webhookToProto(
  record: WebhookRecord,
  deadLetters: DeadLetterRecord[] = [],
): Webhook {
  return Webhook.fromPartial({
    id: record.id,
    url: record.url,
    filter: {
      kinds: record.filter.kinds.map((k) => eventKindFromJSON(k)),
      site: record.filter.site,
      loaderIds: [...record.filter.loaderIds],
      luIds: [...record.filter.luIds],
      agentIds: [...record.filter.agentIds],
    },
    secretFingerprint: record.secretFingerprint,
    description: record.description,
    createdBy: record.createdBy,
    createdAt: record.createdAt,
    cursor: BigInt(record.cursor),
    delivered: BigInt(record.delivered),
    failedAttempts: BigInt(record.failedAttempts),
    deadLettered: BigInt(record.deadLettered),
    lastError: record.lastError,
    lastDeliveredAt: record.lastDeliveredAt,
    deadLetters: deadLetters.map((d) =>
      WebhookDeadLetter.fromPartial({
        cursor: BigInt(d.cursor),
        kind: eventKindFromJSON(d.kind),
        attempts: d.attempts,
        lastError: d.lastError,
        firstAttemptAt: d.firstAttemptAt,
        deadAt: d.deadAt,
      }),
    ),
  });
}

/** The cursor a new webhook starts after: the request's (checked against the log), else the head. */
async function startCursor(events: EventLog, after: bigint | undefined): Promise<number> {
  if (after === undefined) return events.head();
  try {
    const cursor = await cursorOf(events, after);
    await events.readAfter(cursor, undefined, 1);
    return cursor;
  } catch (error) {
    if (error instanceof CursorExpiredError || error instanceof CursorAheadError)
      throw invalidArgument('after_cursor', error.message);
    throw error;
  }
}

/** The webhook RPCs over the store. */
export function createWebhookRpcs(deps: WebhookRpcDeps): WebhookRpcs {
  const checked = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      if (error instanceof WebhookInputError) throw invalidArgument(error.field, error.message);
      throw error;
    }
  };
  return {
    async addWebhook(request, ctx) {
      const url = checked(() => checkWebhookUrl(request.url, deps.allowHttp));
      const secret = checked(() => checkWebhookSecret(request.secret));
      const filter = filterRecord(request.filter);
      const cursor = await startCursor(deps.events, request.afterCursor);
      const record = await deps.store.add({
        url,
        secret,
        filter,
        description: request.description,
        createdBy: defaultPrincipalOf(ctx),
        cursor,
      });
      deps.changed();
      return { webhook: webhookToProto(record) };
    },
    async listWebhooks(request) {
      if (request.deadLetters > MAX_LISTED_DEAD_LETTERS)
        throw invalidArgument(
          'dead_letters',
          `${request.deadLetters}; at most ${MAX_LISTED_DEAD_LETTERS}`,
        );
      const records = await deps.store.list(request.id === '' ? undefined : request.id);
      if (request.id !== '' && records.length === 0)
        throw notFound('webhook', request.id, `no webhook ${quoteInput(request.id)}`);
      const webhooks = await Promise.all(
        records.map(async (r) =>
          webhookToProto(r, await deps.store.deadLetters(r.id, request.deadLetters)),
        ),
      );
      return { webhooks };
    },
    async removeWebhook(request) {
      if (request.id === '') throw invalidArgument('id', 'Required.');
      const removed = await deps.store.remove(request.id);
      if (removed === undefined)
        throw notFound('webhook', request.id, `no webhook ${quoteInput(request.id)}`);
      deps.changed();
      return { webhook: webhookToProto(removed) };
    },
  };
}
