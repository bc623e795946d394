// Shared pieces of the event tests: a PostgreSQL schema per test, a FleetService client, a watcher that collects
// what a Watch stream says, and PROUTs sent straight to the emulator (a second initiator prfleet never sees).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createChannel, createClientFactory, type Channel } from 'nice-grpc';
import { ErrorInfo, errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import { expect, onTestFinished } from 'vitest';
import type { EmulatedHost } from '../../agent/fabric.js';
import { summarizeRpcError, type RpcErrorSummary } from '../../src/common/errors.js';
import {
  EventKind,
  type FleetEvent,
  type WatchRequest,
  type WatchSnapshot,
} from '../../src/gen/prfleet/v1/events.js';
import { FleetServiceDefinition, type FleetServiceClient } from '../../src/gen/prfleet/v1/fleet.js';
import { encodeProut, type ProutRequest } from '../../src/scsi/index.js';
import { probePg, TEST_DATABASE_URL } from '../store/backends.js';

/** Why PostgreSQL tests are skipped (outside CI, when unreachable), or undefined. */
export const pgSkip = process.env['CI'] === 'true' ? undefined : await probePg();

/** A fresh schema on the test PostgreSQL, dropped when the test finishes. */
export function pgSchema(): { databaseUrl: string; schema: string } {
  const schema = `prfleet_ev_${process.pid}_${randomBytes(3).toString('hex')}`;
  onTestFinished(async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });
  return { databaseUrl: TEST_DATABASE_URL, schema };
}

/** A FleetService client with error details, closed when the test finishes. */
export function fleetClient(address: string): FleetServiceClient {
  const channel: Channel = createChannel(address);
  onTestFinished(() => channel.close());
  return createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(FleetServiceDefinition, channel);
}

/** What one Watch stream said: its events, its snapshot, and how it ended. */
export interface Watcher {
  readonly events: FleetEvent[];
  snapshot: WatchSnapshot | undefined;
  ended: { error: RpcErrorSummary | undefined; metadata: Record<string, string> } | undefined;
  /** Resolves with the first collected event that matches (waits up to `timeoutMs`). */
  next(match: (e: FleetEvent) => boolean, timeoutMs?: number): Promise<FleetEvent>;
  /** The kinds seen so far. */
  kinds(): EventKind[];
  stop(): void;
}

/** Starts a Watch and collects it in the background; stopped when the test finishes. */
export function watch(
  client: FleetServiceClient,
  request: Partial<WatchRequest>,
  options: { slow?: () => Promise<void> } = {},
): Watcher {
  const ac = new AbortController();
  const w: Watcher = {
    events: [],
    snapshot: undefined,
    ended: undefined,
    async next(match, timeoutMs = 20_000) {
      let found: FleetEvent | undefined;
      const seen = () =>
        w.events
          .map((e) => `${e.cursor} ${EventKind[e.kind]} ${e.agentId} ${e.summary}`)
          .join('\n');
      await expect
        .poll(
          () => {
            found = w.events.find(match);
            if (found === undefined && w.ended !== undefined)
              throw new Error(`watch ended: ${w.ended.error?.message ?? 'OK'}`);
            return found !== undefined;
          },
          { timeout: timeoutMs, interval: 50 },
        )
        .toBe(true)
        .catch((error: unknown) => {
          throw new Error(`no such event; the watch saw:\n${seen()}`, { cause: error });
        });
      return found!;
    },
    kinds: () => w.events.map((e) => e.kind),
    stop: () => ac.abort(),
  };
  void (async () => {
    try {
      for await (const message of client.watch(request, { signal: ac.signal })) {
        if (message.message?.$case === 'snapshot') w.snapshot = message.message.value;
        if (message.message?.$case === 'event') w.events.push(message.message.value);
        await options.slow?.();
      }
      w.ended = { error: undefined, metadata: {} };
    } catch (error) {
      const info =
        error instanceof RichClientError
          ? error.extra.find((d) => d.$type === ErrorInfo.$type)
          : undefined;
      w.ended = {
        error: ac.signal.aborted ? undefined : summarizeRpcError(error),
        metadata: info?.$type === ErrorInfo.$type ? info.metadata : {},
      };
    }
  })();
  onTestFinished(() => ac.abort());
  return w;
}

/** Sends a PROUT straight to the emulator as `host` on `path`: a change prfleet neither sends nor records. */
export async function proutBehindPrfleet(
  host: EmulatedHost,
  path: string,
  req: Partial<ProutRequest> & { serviceAction: 0 | 1 | 2 | 4 },
): Promise<number> {
  const device = await host.transport.open(path);
  try {
    const { cdb, parameters } = encodeProut({
      scope: 0,
      type: 0,
      reservationKey: 0n,
      serviceActionKey: 0n,
      specIPt: [],
      allTgPt: false,
      aptpl: false,
      ...req,
    });
    const response = await device.execute({
      cdb,
      dataOut: parameters,
      dataInLength: 0,
      timeoutMs: 1000,
    });
    return response.status;
  } finally {
    await device.close();
  }
}

export { EventKind };
