// FleetService.Watch from one hostile principal. Every watch holds a stream, a subscription to the event hub and
// (with a snapshot) a read of every LU's observed state; nothing bounded how many one caller could hold, so one
// viewer token (or one address on a server without tokens) could open thousands. Watches count against a
// per-principal quota of their own (PRFLEET_PRINCIPAL_MAX_WATCHES), like CommandSessions: over it,
// RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA} before anything is read; a watch ended frees its slot.
import { createChannel, createClientFactory, type Channel } from 'nice-grpc';
import { ErrorInfo, errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import { Status } from 'nice-grpc-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import { FleetServiceDefinition, type FleetServiceClient } from '../../src/gen/prfleet/v1/fleet.js';
import { ensureBuilt } from '../helpers/processes.js';

const MAX = 3;

/** Opens a Watch with a snapshot and resolves once the snapshot came (the watch is then held open). */
async function open(client: FleetServiceClient): Promise<{ stop: () => void }> {
  const ac = new AbortController();
  const stream = client.watch({ snapshot: true }, { signal: ac.signal });
  const first = await stream[Symbol.asyncIterator]().next();
  expect(first.done === true ? undefined : first.value.message?.$case).toBe('snapshot');
  // Keep reading in the background so the stream stays a well-behaved watcher until stopped.
  void (async () => {
    try {
      for await (const _ of stream);
    } catch {
      // aborted by stop()
    }
  })();
  return { stop: () => ac.abort() };
}

describe('Watch fair share', () => {
  let server: ServerProcess;
  let channel: Channel;
  let client: FleetServiceClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory', PRFLEET_PRINCIPAL_MAX_WATCHES: String(MAX) },
    });
    channel = createChannel(server.address);
    client = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(FleetServiceDefinition, channel);
  }, 600_000);

  afterAll(async () => {
    channel?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('refuses a watch over the principal quota, names the limit, and frees a slot when one ends', async () => {
    const held = [];
    for (let i = 0; i < MAX; i++) held.push(await open(client));
    const refused = await open(client).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(RichClientError);
    const error = refused as RichClientError;
    expect(error.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(error.details).toContain('PRFLEET_PRINCIPAL_MAX_WATCHES');
    const info = error.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
    expect(info?.reason).toBe('PRINCIPAL_QUOTA');
    expect(info?.metadata['quota']).toBe('watches');

    held.pop()?.stop();
    // The server hears of the cancel a moment later: a new watch gets the freed slot then.
    await expect
      .poll(
        async () =>
          open(client).then(
            (w) => (held.push(w), true),
            () => false,
          ),
        {
          timeout: 10_000,
          interval: 200,
        },
      )
      .toBe(true);
    for (const w of held) w.stop();
  });
});
