/**
 * A PROUT whose agent died mid-command is an UNKNOWN event; the repeat that reads the LU and finds it applied is a
 * PROUT_VERDICT event, both from the history (real server, PostgreSQL, a scripted agent over a real stream).
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { EventKind } from '../../src/gen/prfleet/v1/events.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { openStore } from '../../src/server/store/index.js';
import { startTestServer } from '../helpers/server.js';
import {
  answerReconcileReads,
  connectFakeAgent,
  fakePath,
  type FakeAgent,
} from '../server/fake-agent.js';
import { fleetClient, pgSchema, pgSkip, watch } from './helpers.js';

const LU = 'naa.5000e11100000077';
const target = { luId: LU, agentId: 'host-p', path: '/dev/sg7' };

async function answerGeneration(agent: FakeAgent, generation: number): Promise<void> {
  const read = await agent.nextCommand();
  agent.respond(read, { data: { $case: 'readKeys', value: { generation, keys: [] } } });
}

describe.skipIf(pgSkip !== undefined)(
  'PROUT events of an UNKNOWN and its verdict',
  { timeout: 60_000 },
  () => {
    it('a watcher sees the UNKNOWN, then the verdict of the repeat that settled it', async () => {
      const { databaseUrl, schema } = pgSchema();
      const store = await openStore({ databaseUrl, schema });
      onTestFinished(() => store.close());
      const started = await startTestServer({
        deps: { store },
        config: { instanceId: 'events-verdict' },
      });
      const watcher = watch(fleetClient(started.address), {
        kinds: [EventKind.EVENT_KIND_PROUT, EventKind.EVENT_KIND_PROUT_VERDICT],
      });
      const connect = async () => {
        const agent = await connectFakeAgent(started.address, {
          agentId: target.agentId,
          paths: [fakePath(target.path, LU)],
        });
        await expect.poll(() => started.server.agents.get(target.agentId)?.paths.length).toBe(1);
        return agent;
      };
      const agent = await connect();
      const request = {
        target,
        newKey: 0x52n,
        options: {
          idempotencyKey: 'verdict-1',
          precondition: { expectedGeneration: 3 },
          reason: 'join',
        },
      };
      const call = started.client.register(request);
      await answerGeneration(agent, 3);
      await agent.nextCommand(); // the PROUT reaches the agent, whose process then dies
      agent.kill();
      expect((await call).result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      const unknown = await watcher.next((e) => e.kind === EventKind.EVENT_KIND_PROUT);
      expect(unknown).toMatchObject({ agentId: 'host-p', path: '/dev/sg7', luId: LU });
      expect(unknown.detail?.value).toMatchObject({
        outcome: Outcome.OUTCOME_UNKNOWN,
        idempotencyKey: 'verdict-1',
        reason: 'join',
      });

      const back = await connect();
      const repeat = started.client.register(request);
      await answerReconcileReads(back, 4, [0x52n]);
      expect((await repeat).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
      const verdict = await watcher.next((e) => e.kind === EventKind.EVENT_KIND_PROUT_VERDICT);
      expect(verdict.detail?.value).toMatchObject({
        verdict: 'RECONCILED_APPLIED',
        outcome: Outcome.OUTCOME_GOOD,
        idempotencyKey: 'verdict-1',
      });
      expect(verdict.cursor).toBeGreaterThan(unknown.cursor);
      expect(verdict.summary).toMatch(/REGISTER settled: RECONCILED_APPLIED/);
    });
  },
);
