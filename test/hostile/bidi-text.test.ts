// Text that displays as something else. The edge refused C0/C1 control characters in every request string, but
// not Unicode's bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F): a PROUT reason or a
// takeover's reason kept in the hash-chained history could then read, in a terminal or the web view, unlike the
// bytes the history verifies ("Trojan Source" reordering), and an agent's Hello could name its host the same
// way. They are refused like the other controls, on client requests and on an agent's Hello alike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import {
  startServerProcess,
  startSimProcess,
  type ServerProcess,
} from '../../src/demo/processes.js';
import { LinkUpload } from '../../src/gen/prfleet/v1/agent.js';
import { DEMO_FABRIC, ensureBuilt, type ChildHandle } from '../helpers/processes.js';

const RLO = '\u202e';

describe('bidirectional controls in request text', () => {
  let server: ServerProcess;
  let sim: ChildHandle;
  let client: ControlClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
    sim = await startSimProcess({ address: server.address, fabric: DEMO_FABRIC });
    client = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    client?.close();
    await sim?.stop({ graceMs: 5000 });
    await server?.handle.stop({ graceMs: 5000 });
  });

  it.each([
    ['an override', `host-c failed ${RLO}deliaf ton`],
    ['an isolate', 'ok \u2066x\u2069'],
    ['a mark', 'ok \u200f'],
  ])('refuses a PROUT reason with %s, sending nothing', async (_what, reason) => {
    const error = await client
      .register({
        target: { agentId: 'host-a', path: '/dev/sg2' },
        newKey: 0xa1n,
        options: { reason },
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: Status.INVALID_ARGUMENT });
    expect((error as { details: string }).details).toMatch(/options\.reason.*control character/);
    const { result } = await client.readKeys({ target: { agentId: 'host-a', path: '/dev/sg2' } });
    expect(result?.data?.$case === 'readKeys' ? result.data.value.keys : []).not.toContain(0xa1n);
  });

  it('refuses a Hello whose hostname carries an override', async () => {
    const response = await fetch(`http://${server.address}/agent/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: LinkUpload.encode({
        messages: [
          {
            message: {
              $case: 'hello',
              value: {
                agentId: 'spoof',
                hostname: `db1${RLO}lacol`,
                version: 't',
                site: '',
                labels: {},
                transport: 'emulated',
                acceptsCommandBatches: true,
              },
            },
          },
        ],
      }).finish(),
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/hello\.hostname/);
  });
});
