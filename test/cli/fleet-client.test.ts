// The CLI's FleetService client gets the same middleware as its ControlService client: the deadline is sent to
// the server (prfleet-timeout-ms) and enforced locally, and a read-only unary call is retried once.
import { createServer, ServerError, Status, type CallContext } from 'nice-grpc';
import { afterEach, describe, expect, it } from 'vitest';
import { connectFleet } from '../../src/cli/client.js';
import { TIMEOUT_METADATA_KEY } from '../../src/common/client.js';
import {
  FleetServiceDefinition,
  type DecodeKeyRequest,
  type ListKeysRequest,
} from '../../src/gen/prfleet/v1/fleet.js';

const servers: { shutdown(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.shutdown()));
});

/** A FleetService with ListKeys (fails UNAVAILABLE once) and DecodeKey (never answers). */
async function startFleet() {
  const seen: { method: string; timeout: string | undefined }[] = [];
  let listCalls = 0;
  const impl = {
    listKeys: async (_request: ListKeysRequest, context: CallContext) => {
      seen.push({ method: 'ListKeys', timeout: context.metadata.get(TIMEOUT_METADATA_KEY) });
      listCalls += 1;
      if (listCalls === 1) throw new ServerError(Status.UNAVAILABLE, 'try again');
      return { keys: [] };
    },
    decodeKey: async (_request: DecodeKeyRequest, context: CallContext) => {
      seen.push({ method: 'DecodeKey', timeout: context.metadata.get(TIMEOUT_METADATA_KEY) });
      await new Promise((resolve) => context.signal.addEventListener('abort', resolve));
      throw new ServerError(Status.CANCELLED, 'gone');
    },
  };
  const server = createServer();
  // The two methods the test calls; the others answer UNIMPLEMENTED.
  const unimplemented = Object.fromEntries(
    Object.keys(FleetServiceDefinition.methods).map((name) => [
      name,
      () => {
        throw new ServerError(Status.UNIMPLEMENTED, name);
      },
    ]),
  );
  server.add(FleetServiceDefinition, { ...unimplemented, ...impl } as never);
  const port = await server.listen('127.0.0.1:0');
  servers.push(server);
  return { address: `127.0.0.1:${port}`, seen };
}

describe('connectFleet', () => {
  it('retries a read-only call once and sends the deadline to the server', async () => {
    const { address, seen } = await startFleet();
    const connection = connectFleet(address, { plaintext: true });
    const { client } = connection;
    try {
      await expect(client.listKeys({}, { deadline: 10_000 })).resolves.toEqual({
        keys: [],
        nextPageToken: '',
      });
      expect(seen.map((s) => s.method)).toEqual(['ListKeys', 'ListKeys']);
      const sent = Number(seen[0]?.timeout);
      expect(sent).toBeGreaterThan(5_000);
      expect(sent).toBeLessThanOrEqual(10_000);
    } finally {
      connection.close();
    }
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED', async () => {
    const { address } = await startFleet();
    const connection = connectFleet(address, { plaintext: true });
    const { client } = connection;
    try {
      await expect(client.decodeKey({ key: 1n }, { deadline: 200 })).rejects.toMatchObject({
        code: Status.DEADLINE_EXCEEDED,
      });
    } finally {
      connection.close();
    }
  });
});
