// An agent's session (a valid certificate, or anyone on a plaintext server) sending messages the server ignores:
// a second Hello, or a message with nothing in it. Found: each was logged as its own warning, so an agent could
// write a log line per message it sent (10,000 lines for 10,000 messages of a few bytes), as it could with
// results for commands never sent before those were rate-limited (test/server/malicious-agent.test.ts). Now each
// kind is logged at most once per interval, with the count of those left out.
import { describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';

describe('an agent sending messages the server ignores', () => {
  it('cannot write a log line per message: second Hellos and empty messages are logged a few times', async () => {
    const capture = captureLog('warn');
    const { client, server, address } = await startTestServer({ log: capture.log });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    for (let i = 0; i < 5_000; i += 1) {
      agent.send({ message: { $case: 'hello', value: { agentId: `host-${i}` } } });
      agent.send({});
    }
    // Messages are handled in order: once this command's result is in, every ignored one was handled.
    const read = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand());
    expect((await read).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const hellos = capture.withMessage(/second hello/);
    const empties = capture.withMessage(/empty message/);
    expect(hellos.length).toBeGreaterThanOrEqual(1);
    expect(hellos.length).toBeLessThanOrEqual(5);
    expect(empties.length).toBeGreaterThanOrEqual(1);
    expect(empties.length).toBeLessThanOrEqual(5);
    expect(hellos[0]).toMatchObject({ agentId: 'host-a' });
    // The session is still host-a's: a second Hello renames nothing.
    expect(server.agents.get('host-0')).toBeUndefined();
  });
});
