// FleetService requests whose command_timeout (or Audit's progress_interval) is longer than any timer holds.
// Found: the fleet RPCs checked only that it was positive, while a single command refuses one over an hour
// (docs/api-limits.md). Apply with options.command_timeout of 10^7 s sent its precondition read to the agent
// with that timeout, and the server's own timer for the answer (10^10 ms: Node's TimeoutOverflowWarning, then
// 1 ms) settled it at once as UNKNOWN ("no result from agent host-a within 10000005000 ms") while the agent
// still held it. Now every fleet RPC refuses a command_timeout over the single-command maximum, and Audit a
// progress_interval over it (its timer overflowed into a progress event every millisecond), with
// INVALID_ARGUMENT naming the field, before anything is read or sent.
import { createChannel, createClient, Status } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import { ProutAction } from '../../src/gen/prfleet/v1/scsi.js';
import { MAX_COMMAND_TIMEOUT_MS } from '../../src/server/deadline.js';
import { startTestServer } from '../helpers/server.js';
import { pgStore } from '../helpers/pg-store.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';

/** 10^7 s: 10^10 ms, past the 2^31 − 1 ms a Node timer holds. */
const TOO_LONG = { seconds: 10_000_000n, nanos: 0 };
/** One millisecond over the maximum a single command accepts. */
const JUST_OVER = { seconds: BigInt(MAX_COMMAND_TIMEOUT_MS / 1000), nanos: 1_000_000 };

async function drain(stream: AsyncIterable<unknown>): Promise<unknown> {
  try {
    for await (const _ of stream);
    return undefined;
  } catch (error) {
    return error;
  }
}

describe('fleet RPCs with a command_timeout longer than a timer holds', () => {
  it('refuse it with INVALID_ARGUMENT naming the field, and nothing reaches the agent', async () => {
    const { address, server } = await startTestServer({ deps: { store: await pgStore('adv') } });
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    const selector = { luIds: [LU1] };
    const step = {
      luId: LU1,
      agentId: 'host-a',
      path: '/dev/sg0',
      prout: { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 0xa1n },
    };
    for (const timeout of [TOO_LONG, JUST_OVER]) {
      const refusals: [string, unknown][] = [
        [
          'options.command_timeout',
          await drain(fleet.apply({ steps: [step], options: { commandTimeout: timeout } })),
        ],
        [
          'options.command_timeout',
          await drain(
            fleet.takeover({
              selector,
              victim: { $case: 'victimKey', value: 0xb1n },
              agentId: 'host-a',
              key: 0xa1n,
              options: { commandTimeout: timeout },
            }),
          ),
        ],
        ['command_timeout', await drain(fleet.audit({ selector, commandTimeout: timeout }))],
        ['progress_interval', await drain(fleet.audit({ selector, progressInterval: timeout }))],
        [
          'command_timeout',
          await fleet.plan({ selector, commandTimeout: timeout }).catch((e: unknown) => e),
        ],
        [
          'command_timeout',
          await fleet
            .listLoaders({ selector, commandTimeout: timeout, refresh: true })
            .catch((e: unknown) => e),
        ],
        [
          'command_timeout',
          await fleet
            .resetLogicalUnit({ luId: LU1, reason: 'stuck', commandTimeout: timeout })
            .catch((e: unknown) => e),
        ],
      ];
      for (const [field, error] of refusals) {
        expect(error, field).toMatchObject({ code: Status.INVALID_ARGUMENT });
        expect(String((error as Error).message), field).toContain(field);
      }
    }
    await expect(agent.nextCommand(300)).rejects.toThrow(/no command/);
  });
});
