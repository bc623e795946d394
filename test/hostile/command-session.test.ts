// Issue 11, point 3: a CommandSession abused by its client. A second command in flight under the same request
// id and an over-long request id are refused in-band (the session stays open and answers the rest); many
// commands in flight print no MaxListenersExceededWarning: the server's output stays JSON lines.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { startServerProcess, startSimProcess } from '../../src/demo/processes.js';
import type {
  CommandSessionRequest,
  CommandSessionResponse,
  DeepPartial,
} from '../../src/gen/prfleet/v1/control.js';
import { MAX_REQUEST_ID_LENGTH } from '../../src/server/command-session.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';

const drive = { agentId: 'host-b', path: '/dev/sg1' };

function readKeys(requestId: string): DeepPartial<CommandSessionRequest> {
  return { requestId, command: { $case: 'readKeys', value: { target: drive } } };
}

async function* from(items: readonly DeepPartial<CommandSessionRequest>[]) {
  for (const item of items) yield item;
}

/** Every reply of a session that sends `requests` and half-closes. */
async function session(
  client: ControlClient,
  requests: readonly DeepPartial<CommandSessionRequest>[],
): Promise<CommandSessionResponse[]> {
  const replies: CommandSessionResponse[] = [];
  for await (const reply of client.commandSession(from(requests), { deadline: 60_000 }))
    replies.push(reply);
  return replies;
}

/** The lines of `output` that are not JSON objects. */
function notJson(output: readonly string[]): string[] {
  return output.filter((line) => {
    try {
      return typeof JSON.parse(line) !== 'object';
    } catch {
      return true;
    }
  });
}

describe('CommandSession against a prfleet-server process', () => {
  let server: Awaited<ReturnType<typeof startServerProcess>>;
  let sim: ChildHandle;
  let client: ControlClient;
  const output: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory' },
      onLine: (line) => output.push(line),
    });
    sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC });
    client = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    client?.close();
    await sim?.stop({ graceMs: 5000 });
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('refuses a request id already in flight, in-band, and answers the first command', async () => {
    // Sent back to back: the first READ KEYS is still waiting for the agent when its twin is read.
    const replies = await session(client, [readKeys('twin'), readKeys('twin'), readKeys('other')]);
    const twins = replies.filter((r) => r.requestId === 'twin');
    expect(twins).toHaveLength(2);
    const refused = twins.find((r) => r.reply?.$case === 'error');
    expect(refused?.reply).toMatchObject({
      $case: 'error',
      value: { code: Status.ALREADY_EXISTS, field: 'request_id' },
    });
    expect(twins.some((r) => r.reply?.$case === 'result')).toBe(true);
    expect(replies.find((r) => r.requestId === 'other')?.reply?.$case).toBe('result');
  });

  it('refuses a request id over the cap in-band, quoting only a prefix, and serves the next', async () => {
    const long = 'x'.repeat(20_000);
    const replies = await session(client, [readKeys(long), readKeys('after')]);
    expect(replies).toHaveLength(2);
    const refused = replies.find((r) => r.reply?.$case === 'error');
    // The reply cannot carry an id the server refused to keep: empty, as for a missing id.
    expect(refused?.requestId).toBe('');
    expect(refused?.reply).toMatchObject({
      $case: 'error',
      value: { code: Status.INVALID_ARGUMENT, field: 'request_id' },
    });
    const message = refused?.reply?.$case === 'error' ? refused.reply.value.message : '';
    expect(message).toContain(String(MAX_REQUEST_ID_LENGTH));
    expect(message.length).toBeLessThan(300);
    expect(replies.find((r) => r.requestId === 'after')?.reply?.$case).toBe('result');
    // The longest id allowed is served.
    const atCap = 'y'.repeat(MAX_REQUEST_ID_LENGTH);
    const [served] = await session(client, [readKeys(atCap)]);
    expect(served?.requestId).toBe(atCap);
    expect(served?.reply?.$case).toBe('result');
  });

  it('runs 40 commands in flight on one session without a MaxListenersExceededWarning', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `c${i}`);
    const replies = await session(client, ids.map(readKeys));
    expect(replies.map((r) => r.requestId).sort()).toEqual([...ids].sort());
    expect(replies.every((r) => r.reply?.$case === 'result')).toBe(true);
    // Warnings arrive on the next tick at the latest: a ListAgents round trip later they are printed.
    await client.listAgents({});
    expect(output.filter((line) => line.includes('MaxListeners'))).toEqual([]);
    expect(notJson(output)).toEqual([]);
  });
});
