// A compromised agent (test/server/fake-agent.ts: a valid session that says whatever the test tells it) whose
// results contradict themselves or the command, against a real server with a PostgreSQL history. Found: the
// server checked only sizes (test/server/malicious-agent.test.ts), so
// - a PROUT answered GOOD with status 0x10000 reached the caller as GOOD while its history entry could not be
//   written (the status is no byte): four append attempts over ~2.6 s, then the journal completed alone and the
//   history lacked the PROUT;
// - a PROUT answered GOOD whose status byte says RESERVATION CONFLICT went into the history as applied;
// - a READ KEYS answered with READ RESERVATION data reached the caller as that data.
// Each is now settled as UNKNOWN (the command may or may not have run), recorded like any UNKNOWN, keeping none
// of what the agent sent.
import { describe, expect, it } from 'vitest';
import type { DeepPartial } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { startTestServer } from '../helpers/server.js';
import { pgStore } from '../helpers/pg-store.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const TARGET = { agentId: 'host-a', path: '/dev/sg0' };

async function fleetWithLiar() {
  const started = await startTestServer({ deps: { store: await pgStore('adv') } });
  const agent = await connectFakeAgent(started.address, {
    agentId: 'host-a',
    paths: [fakePath('/dev/sg0', LU1)],
  });
  await expect.poll(() => started.server.agents.get('host-a')?.paths.length).toBe(1);
  return { ...started, agent };
}

const SENSE_ILLEGAL_REQUEST = Buffer.from([
  0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0,
]);

/** PROUT answers that cannot be a device's, and why each is refused. */
const LYING_PROUT: readonly [string, DeepPartial<CommandResult>, RegExp][] = [
  [
    'status 0x10000',
    { outcome: Outcome.OUTCOME_GOOD, status: 0x1_0000 },
    /status 65536 is not a status byte/,
  ],
  [
    'GOOD with status RESERVATION CONFLICT',
    { outcome: Outcome.OUTCOME_GOOD, status: 0x18 },
    /OUTCOME_GOOD contradicts its status 0x18.*OUTCOME_RESERVATION_CONFLICT/,
  ],
  [
    'RESERVATION CONFLICT with status GOOD',
    { outcome: Outcome.OUTCOME_RESERVATION_CONFLICT, status: 0 },
    /OUTCOME_RESERVATION_CONFLICT contradicts its status 0x0/,
  ],
  [
    'GOOD with host status DID_NO_CONNECT',
    { outcome: Outcome.OUTCOME_GOOD, status: 0, hostStatus: 1 },
    /host 0x1.*OUTCOME_TRANSPORT_ERROR/,
  ],
  [
    'GOOD carrying READ KEYS data',
    {
      outcome: Outcome.OUTCOME_GOOD,
      data: { $case: 'readKeys', value: { generation: 1, keys: [] } },
    },
    /readKeys data in a OUTCOME_GOOD answer to prout/,
  ],
];

describe('a lying agent’s self-contradicting results', () => {
  it.each(LYING_PROUT)(
    'settles a PROUT answered with %s as UNKNOWN, recorded in the history at once',
    async (_what, answer, why) => {
      const { client, agent } = await fleetWithLiar();
      const started = Date.now();
      const pending = client.register({ target: TARGET, newKey: 0xa1n });
      agent.respond(await agent.nextCommand(), answer);
      const { result } = await pending;
      expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(result?.message).toMatch(why);
      expect(result?.status).toBe(0);
      expect(result?.data).toBeUndefined();
      // Recorded with the result, not after the store refused it over seconds of retries.
      expect(Date.now() - started).toBeLessThan(2_000);
      const { entries } = await client.listHistory({});
      expect(entries.map((e) => e.outcome)).toEqual([Outcome.OUTCOME_UNKNOWN]);
      expect(await client.verifyHistory({})).toMatchObject({ ok: true, checked: 1n });
    },
  );

  it('settles a PRIN answered with another action’s data, or data beside CHECK CONDITION, as UNKNOWN', async () => {
    const { client, agent } = await fleetWithLiar();
    const wrongKind = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      data: { $case: 'readReservation', value: { generation: 7, reserved: true, key: 5n } },
    });
    const wrong = (await wrongKind).result;
    expect(wrong?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(wrong?.message).toMatch(/readReservation data .*\(readKeys expected\)/);
    expect(wrong?.data).toBeUndefined();

    const beside = client.readReservation({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_CHECK_CONDITION,
      status: 2,
      sense: { raw: SENSE_ILLEGAL_REQUEST },
      data: { $case: 'readReservation', value: { generation: 7, reserved: true, key: 5n } },
    });
    expect((await beside).result).toMatchObject({
      outcome: Outcome.OUTCOME_UNKNOWN,
      data: undefined,
    });
  });

  it('settles a result echoing a CDB or data-out the command never had as UNKNOWN, journaling none of it', async () => {
    const { client, agent } = await fleetWithLiar();
    const options = { idempotencyKey: 'echo-1' };
    for (const echo of [
      { cdb: Buffer.alloc(1_000_000, 0x5f) },
      { dataOut: Buffer.alloc(1_000_000) },
    ]) {
      const pending = client.register({ target: TARGET, newKey: 0xa1n, options });
      agent.respond(await agent.nextCommand(), echo);
      const { result } = await pending;
      expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(result?.message).toMatch(/(cdb|data-out) of 1000000 bytes/);
      // The repeat of the key is answered from the journal (an UNKNOWN is settled by reading the LU).
      const settle = client.register({ target: TARGET, newKey: 0xa1n, options });
      for (let i = 0; i < 3; i += 1) {
        const next = await agent.nextCommand(2_000).catch(() => undefined);
        if (next === undefined) break;
        agent.respond(next, next.kind?.$case === 'prin' ? {} : { outcome: Outcome.OUTCOME_GOOD });
      }
      const repeated = (await settle).result;
      expect(repeated?.cdb.length ?? 0).toBeLessThanOrEqual(16);
      expect(repeated?.dataOut.length ?? 0).toBeLessThanOrEqual(24);
      options.idempotencyKey = 'echo-2';
    }
  });

  it('keeps answers whose outcome, status and data agree', async () => {
    const { client, agent } = await fleetWithLiar();
    const conflict = client.register({ target: TARGET, newKey: 0xa1n });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
      status: 0x18,
    });
    expect((await conflict).result?.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    // Host status DID_NEXUS_FAILURE is a conflict on older kernels whatever the status byte says.
    const nexus = client.register({ target: TARGET, newKey: 0xa2n });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_RESERVATION_CONFLICT,
      hostStatus: 0x11,
    });
    expect((await nexus).result?.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    const illegal = client.register({ target: TARGET, newKey: 0xa3n });
    agent.respond(await agent.nextCommand(), {
      outcome: Outcome.OUTCOME_CHECK_CONDITION,
      status: 2,
      sense: { raw: SENSE_ILLEGAL_REQUEST },
    });
    expect((await illegal).result?.outcome).toBe(Outcome.OUTCOME_CHECK_CONDITION);
    const keys = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      data: { $case: 'readKeys', value: { generation: 3, keys: [0xa1n] } },
    });
    expect((await keys).result?.data).toMatchObject({ $case: 'readKeys' });
    // A timeout the agent's own timer called (no host status) and an OS error are not device answers.
    const stuck = client.register({ target: TARGET, newKey: 0xa4n });
    agent.respond(await agent.nextCommand(), { outcome: Outcome.OUTCOME_TIMEOUT });
    expect((await stuck).result?.outcome).toBe(Outcome.OUTCOME_TIMEOUT);
    const { entries } = await client.listHistory({});
    expect(entries.map((e) => e.outcome)).toEqual([
      Outcome.OUTCOME_RESERVATION_CONFLICT,
      Outcome.OUTCOME_RESERVATION_CONFLICT,
      Outcome.OUTCOME_CHECK_CONDITION,
      Outcome.OUTCOME_TIMEOUT,
    ]);
  });
});
