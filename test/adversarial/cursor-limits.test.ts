// Event cursors at the limits of their uint64 wire type, against a real server with the PostgreSQL event log.
// Found: the server turned a caller's cursor into a JavaScript number, so one above 2^53 was rounded, and
// - AddWebhook with after_cursor 2^63-1 or more (rounded to 2^63, beyond PostgreSQL's bigint) answered INTERNAL
//   ("internal error", the query refused the number as out of range) instead of refusing the field;
// - Watch's refusal quoted another cursor than the one sent (2^64-1 as 18446744073709552000).
// A cursor no number holds exactly is now ahead of any log, refused quoting it as sent (events/types.ts cursorOf).
import { Status } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createFleetClient } from '../../src/common/client.js';
import { defaultServerConfig } from '../../src/server/config.js';
import { pgStore } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';

const CURSORS = [2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];

async function fleetClient() {
  const { address } = await startTestServer({
    deps: { store: await pgStore('advcursor') },
    config: { webhooks: { ...defaultServerConfig().webhooks, allowHttp: true } },
  });
  const fleet = createFleetClient(address);
  onTestFinished(() => fleet.close());
  return fleet;
}

type RpcError = { code: Status; details: string };

describe('event cursors above 2^53', () => {
  it.each(CURSORS)('Watch after %s is OUT_OF_RANGE, quoting the cursor sent', async (cursor) => {
    const fleet = await fleetClient();
    const error = await (async () => {
      for await (const _ of fleet.watch({ afterCursor: cursor })) return undefined;
      return undefined;
    })().catch((e: unknown) => e as RpcError);
    expect(error).toMatchObject({ code: Status.OUT_OF_RANGE });
    expect(error?.details).toContain(`cursor ${cursor} is ahead of the event log (newest 0)`);
  });

  it.each(CURSORS)(
    'AddWebhook after %s is INVALID_ARGUMENT naming after_cursor, and adds nothing',
    async (cursor) => {
      const fleet = await fleetClient();
      const error = (await fleet
        .addWebhook({ url: 'http://127.0.0.1:9/hook', secret: 's'.repeat(32), afterCursor: cursor })
        .catch((e: unknown) => e)) as RpcError;
      expect(error).toMatchObject({ code: Status.INVALID_ARGUMENT });
      expect(error.details).toContain(`after_cursor: cursor ${cursor} is ahead`);
      expect((await fleet.listWebhooks({})).webhooks).toEqual([]);
    },
  );
});
