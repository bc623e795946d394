// A lying agent's unit attentions. Found: a result's own sense was held to 252 bytes and its texts to 4,096
// characters (test/server/malicious-agent.test.ts), but the senses of the unit attentions it reports were not:
// 64 of them with 60 KB of raw sense and 60 KB of description each (about 4 MB in one result) became 64
// UNIT_ATTENTION events of over 100 KB apiece, kept in the event log, sent to every watcher and webhook. The
// same bounds now hold for each unit attention's sense; a result that breaks them settles as UNKNOWN and
// records no event.
import { describe, expect, it } from 'vitest';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { MAX_RESULT_TEXT, MAX_SENSE_BYTES } from '../../src/server/agents/results.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';
import { EventKind, fleetClient, watch } from '../events/helpers.js';

const LU1 = 'naa.5000e11100000001';

/** A UNIT ATTENTION sense (fixed format, key 6, asc/ascq 2a/03 RESERVATIONS PREEMPTED) padded to `bytes`. */
function uaSense(bytes: number, description = 'reservations preempted') {
  const raw = Buffer.alloc(bytes);
  raw.set([0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x03]);
  return { raw, senseKey: 6, asc: 0x2a, ascq: 0x03, description };
}

describe('unit attentions a lying agent reports', () => {
  it('are held to the bounds of a result’s own sense: over them the result is UNKNOWN and no event is kept', async () => {
    const { address, server, client } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    const watcher = watch(fleetClient(address), { kinds: [EventKind.EVENT_KIND_UNIT_ATTENTION] });

    for (const sense of [uaSense(60_000), uaSense(18, 'd'.repeat(60_000))]) {
      const read = client.readKeys({ target: { luId: LU1 } });
      agent.respond(await agent.nextCommand(), {
        unitAttentions: Array.from({ length: 64 }, () => ({ sense })),
      });
      const { result } = await read;
      expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(result?.unitAttentions).toEqual([]);
      expect(result?.message).toMatch(/unit attention/);
    }
    // Within the bounds, a unit attention is news, told once.
    const fine = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      unitAttentions: [{ sense: uaSense(MAX_SENSE_BYTES, 'r'.repeat(MAX_RESULT_TEXT)) }],
    });
    expect((await fine).result?.unitAttentions).toHaveLength(1);
    await watcher.next((e) => e.kind === EventKind.EVENT_KIND_UNIT_ATTENTION);
    await new Promise((r) => setTimeout(r, 300));
    expect(watcher.events).toHaveLength(1);
  });
});
