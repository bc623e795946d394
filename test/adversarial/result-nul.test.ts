// A compromised agent's result texts holding U+0000, against a real server with a PostgreSQL journal and history.
// Found: PostgreSQL keeps U+0000 in neither text nor jsonb, and nothing refused it in a result, so a REGISTER
// answered OS ERROR with the message "EIO\0", or GOOD with a unit attention whose words held a NUL, took ~5.5 s
// (the history append retried, then gave up): the PROUT that was sent was missing from the history, and a repeat of
// its idempotency key answered INTERNAL. A string holding U+0000 anywhere in a result now settles the command as
// UNKNOWN like any result that cannot be a device's answer (agents/results.ts), recorded at once.
import { describe, expect, it } from 'vitest';
import { Outcome, type CommandResult, type DeepPartial } from '../../src/gen/prfleet/v1/scsi.js';
import { pgStore } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';
import { answerReconcileReads, connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const TARGET = { agentId: 'host-a', path: '/dev/sg0' };
const PREEMPTED = Buffer.from([0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 5, 0, 0, 0, 0]);

const NUL_ANSWERS: readonly [string, DeepPartial<CommandResult>][] = [
  ['an OS error message', { outcome: Outcome.OUTCOME_OS_ERROR, errno: 5, message: 'EIO\u0000x' }],
  [
    'a unit attention’s words',
    {
      unitAttentions: [
        {
          sense: {
            raw: PREEMPTED,
            senseKey: 6,
            asc: 0x2a,
            ascq: 5,
            description: 'preempted\u0000',
          },
        },
      ],
    },
  ],
  ['a status name', { statusName: 'GOOD\u0000' }],
];

describe('an agent’s result texts holding U+0000', () => {
  it.each(NUL_ANSWERS)(
    'settle a PROUT answered with NUL in %s as UNKNOWN, in the history at once',
    async (_what, answer) => {
      const started = await startTestServer({ deps: { store: await pgStore('advnul') } });
      const agent = await connectFakeAgent(started.address, {
        agentId: 'host-a',
        paths: [fakePath('/dev/sg0', LU1)],
      });
      await expect.poll(() => started.server.agents.get('host-a')?.paths.length).toBe(1);
      const { client } = started;
      const t0 = Date.now();
      const pending = client.register({
        target: TARGET,
        newKey: 0xa1n,
        options: { idempotencyKey: 'nul-1' },
      });
      agent.respond(await agent.nextCommand(), answer);
      const { result } = await pending;
      expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(result?.message).toMatch(/U\+0000/);
      expect(Date.now() - t0).toBeLessThan(2_000); // recorded, not retried against the store for seconds
      const { entries } = await client.listHistory({});
      expect(entries.map((e) => e.outcome)).toEqual([Outcome.OUTCOME_UNKNOWN]);
      expect(await client.verifyHistory({})).toMatchObject({ ok: true, checked: 1n });
      // The repeat of the key is answered from the journal: the UNKNOWN is settled by reading the LU (the key
      // is registered: applied, recorded GOOD without sending it again).
      const repeat = client.register({
        target: TARGET,
        newKey: 0xa1n,
        options: { idempotencyKey: 'nul-1' },
      });
      expect(await answerReconcileReads(agent, 1, [0xa1n])).toEqual(['prout', 'prin', 'prin']);
      expect((await repeat).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    },
  );
});
