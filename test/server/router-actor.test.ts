// Issue 12 point 7: the actor is the authenticated principal in the logs too. The router's per-command lines
// ('command done', and 'caller gave up' when the caller goes away) name who the command runs for.
import { createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ControlServiceDefinition } from '../../src/gen/prfleet/v1/control.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import {
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
} from '../../src/server/auth/index.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { captureLog } from '../helpers/log-capture.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

describe('the router’s log lines name the authenticated principal', () => {
  it('puts the token’s principal on each command’s line, also when the caller gave up', async () => {
    const capture = captureLog('info');
    const tokens = createMemoryTokenStore();
    const { token } = await createToken(tokens, { name: 'ada', role: 'admin' });
    const { address } = await startTestServer({
      log: capture.log,
      deps: { controlMiddleware: createAuthMiddleware({ tokens }) },
    });
    await startEmulatedAgents({ address });
    // A silent agent: its command stays in flight until the caller's deadline.
    await connectFakeAgent(address, {
      agentId: 'host-z',
      paths: [fakePath('/dev/sg0', 'naa.5000e11100000099')],
    });
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const ada = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      });

    const { result } = await ada.register({
      target: { agentId: 'host-a', path: '/dev/sg2' },
      newKey: 0xa1n,
      ignoreExistingKey: true,
      options: { idempotencyKey: 'actor-1', reason: 'actor in router logs' },
    });
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const done = capture
      .withMessage('command done')
      .filter((l) => String(l['idempotencyKey']).endsWith('actor-1'));
    expect(done).toHaveLength(1);
    expect(String(done[0]?.['actor'])).toContain('ada');

    const gaveUp = ada.readKeys(
      { target: { agentId: 'host-z', path: '/dev/sg0' } },
      { signal: AbortSignal.timeout(300) },
    );
    await expect(gaveUp).rejects.toThrow();
    await expect
      .poll(() => capture.withMessage('caller gave up: cancel sent to agent'))
      .toHaveLength(1);
    const line = capture.withMessage('caller gave up: cancel sent to agent')[0];
    expect({ agentId: line?.['agentId'], actor: String(line?.['actor']) }).toMatchObject({
      agentId: 'host-z',
      actor: expect.stringContaining('ada') as unknown,
    });
  });
});
