import { describe, expect, it } from 'vitest';
import { ChangeCause } from '../../src/gen/prfleet/v1/events.js';
import { Outcome, ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';
import { LOADER1_CHANGER, LOADER1_DRIVE, waitForPaths } from '../e2e/fleet.js';
import { EventKind, fleetClient, pgSchema, pgSkip, proutBehindPrfleet, watch } from './helpers.js';

const A_DRIVE = { agentId: 'host-a', path: '/dev/sg2', luId: LOADER1_DRIVE };
const C_DRIVE = { agentId: 'host-c', path: '/dev/sg1', luId: LOADER1_DRIVE };

describe.skipIf(pgSkip !== undefined)(
  'FleetService.Watch on a real server, emulated agents and PostgreSQL',
  { timeout: 120_000 },
  () => {
    it('tells agents, paths, PROUTs, a preemption the preempted host meets, changes made behind prfleet, and findings', async () => {
      const { databaseUrl, schema } = pgSchema();
      const { address, client, server } = await startTestServer({
        config: {
          store: { kind: 'postgres', databaseUrl, schema },
          events: {
            retainEvents: 10_000,
            retainMs: 3_600_000,
            maxLag: 10_000,
            pollMs: 50,
            observeIntervalMs: 800,
            observeConcurrency: 4,
          },
        },
      });
      const fleet = fleetClient(address);
      const all = watch(fleet, { afterCursor: 0n });
      const hostC = watch(fleet, { agentIds: ['host-c'] });
      const dc2 = watch(fleet, { site: 'dc2' });
      const attentions = watch(fleet, { kinds: [EventKind.EVENT_KIND_UNIT_ATTENTION] });
      const loader2 = watch(fleet, { loaderIds: ['loader2'] });

      const agents = await startEmulatedAgents({ address });
      await waitForPaths(client, LOADER1_DRIVE, 3);
      for (const id of ['host-a', 'host-b', 'host-c'])
        await all.next((e) => e.kind === EventKind.EVENT_KIND_AGENT_CONNECTED && e.agentId === id);
      const path = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_PATH_APPEARED &&
          e.agentId === 'host-a' &&
          e.path === '/dev/sg2',
      );
      expect(path).toMatchObject({ luId: LOADER1_DRIVE, site: 'dc1', loaderId: 'loader1' });

      // The LU's baseline is observed before anything changes (the first observation records no change).
      await expect
        .poll(
          async () => (await server.events.observed.get(LOADER1_DRIVE)).observed !== undefined,
          { timeout: 20_000 },
        )
        .toBe(true);

      // PROUTs through prfleet: each is an event from the history, with who, nexus, what and outcome.
      await client.register({ target: A_DRIVE, newKey: 0xa1n });
      await client.register({ target: C_DRIVE, newKey: 0xc1n });
      await client.reserve({ target: C_DRIVE, key: 0xc1n, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS });
      const reserve = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_PROUT &&
          e.agentId === 'host-c' &&
          e.detail?.$case === 'prout' &&
          e.detail.value.action === ProutAction.PROUT_ACTION_RESERVE,
      );
      expect(reserve).toMatchObject({
        path: '/dev/sg1',
        luId: LOADER1_DRIVE,
        actor: 'anonymous',
        site: 'dc2',
        loaderId: 'loader1',
      });
      expect(reserve.detail?.value).toMatchObject({
        reservationKey: 0xc1n,
        outcome: Outcome.OUTCOME_GOOD,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      });

      // host-a preempts host-c: the PROUT, the reservation change it made, and host-c's unit attention.
      await client.preempt({
        target: A_DRIVE,
        key: 0xa1n,
        preemptKey: 0xc1n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options: { reason: 'host-c failed' },
      });
      const preempt = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_PROUT &&
          e.detail?.$case === 'prout' &&
          e.detail.value.action === ProutAction.PROUT_ACTION_PREEMPT,
      );
      expect(preempt.detail?.value).toMatchObject({
        serviceActionKey: 0xc1n,
        reason: 'host-c failed',
      });
      const moved = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_RESERVATION_CHANGED &&
          e.detail?.$case === 'prChange' &&
          e.detail.value.after?.holderKey === 0xa1n,
      );
      // Observations sample the LU: the state before is the last one observed (host-c's, unless a read missed it).
      expect(moved.detail?.value).toMatchObject({ after: { reserved: true, holderKey: 0xa1n } });
      await client.readKeys({ target: C_DRIVE });
      const ua = await attentions.next(() => true);
      expect(ua).toMatchObject({
        agentId: 'host-c',
        path: '/dev/sg1',
        luId: LOADER1_DRIVE,
        site: 'dc2',
      });
      expect(ua.detail?.$case === 'unitAttention' && ua.detail.value.description).toBe(
        'registrations preempted',
      );

      // The re-read host-c's unit attention asked for is done before the next change (it would be its cause).
      await new Promise((r) => setTimeout(r, 1_500));
      // A change no prfleet command made (another initiator, e.g. sg_persist on host-b) is caught by the observation.
      expect(
        await proutBehindPrfleet(agents.fabric.host('host-b'), '/dev/sg1', {
          serviceAction: 0,
          serviceActionKey: 0xb1n,
        }),
      ).toBe(0);
      const outside = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_REGISTRATIONS_CHANGED &&
          e.detail?.$case === 'prChange' &&
          e.detail.value.keysAdded.includes(0xb1n),
      );
      expect(outside).toMatchObject({ actor: 'observation', luId: LOADER1_DRIVE });
      expect(outside.detail?.value).toMatchObject({ cause: ChangeCause.CHANGE_CAUSE_OBSERVATION });
      // 0xb1 is in no key registry: a finding raised, and cleared once the key is gone again.
      const raised = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_FINDING_RAISED &&
          e.detail?.$case === 'finding' &&
          e.detail.value.key === 0xb1n,
      );
      expect(raised.detail?.value).toMatchObject({ findingKind: 'FINDING_KIND_UNKNOWN_KEY' });
      expect(
        await proutBehindPrfleet(agents.fabric.host('host-b'), '/dev/sg1', {
          serviceAction: 0,
          reservationKey: 0xb1n,
          serviceActionKey: 0n,
        }),
      ).toBe(0);
      await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_FINDING_CLEARED &&
          e.detail?.$case === 'finding' &&
          e.detail.value.key === 0xb1n,
      );

      // A loader deadlock: host-a holds the drive, host-c takes the changer.
      await client.register({
        target: { agentId: 'host-c', path: '/dev/sg0', luId: LOADER1_CHANGER },
        newKey: 0xc2n,
      });
      await client.reserve({
        target: { agentId: 'host-c', path: '/dev/sg0', luId: LOADER1_CHANGER },
        key: 0xc2n,
        type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      });
      const deadlock = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_FINDING_RAISED &&
          e.detail?.$case === 'finding' &&
          e.detail.value.findingKind === 'FINDING_KIND_LOADER_DEADLOCK',
      );
      expect(deadlock).toMatchObject({ loaderId: 'loader1' });
      await client.release({
        target: { agentId: 'host-c', path: '/dev/sg0', luId: LOADER1_CHANGER },
        key: 0xc2n,
        type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      });
      await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_FINDING_CLEARED &&
          e.detail?.$case === 'finding' &&
          e.detail.value.findingKind === 'FINDING_KIND_LOADER_DEADLOCK',
      );

      // An agent going away.
      await agents.agent('host-b').stop();
      await all.next(
        (e) => e.kind === EventKind.EVENT_KIND_AGENT_DISCONNECTED && e.agentId === 'host-b',
      );

      // An audit reads every path: what it finds (host-b's paths unreachable now) is raised too, by the audit.
      for await (const _ of fleet.audit({})) void _;
      const unreachable = await all.next(
        (e) =>
          e.kind === EventKind.EVENT_KIND_FINDING_RAISED &&
          e.actor === 'audit' &&
          e.detail?.$case === 'finding' &&
          e.detail.value.findingKind === 'FINDING_KIND_UNREACHABLE',
      );
      expect(unreachable.agentId).toBe('host-b');

      // Cursors strictly increase; filters keep exactly what they select.
      const cursors = all.events.map((e) => Number(e.cursor));
      expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
      expect(new Set(cursors).size).toBe(cursors.length);
      await expect.poll(() => hostC.events.length).toBeGreaterThan(3);
      expect(hostC.events.every((e) => e.agentId === 'host-c')).toBe(true);
      expect(hostC.kinds()).toContain(EventKind.EVENT_KIND_UNIT_ATTENTION);
      expect(dc2.events.length).toBeGreaterThan(0);
      // Site dc2 (host-c): host-c's own news, and what happens to the LUs host-c sees (all four here).
      expect(
        dc2.events
          .filter((e) => e.kind <= EventKind.EVENT_KIND_PATH_LOST)
          .every((e) => e.agentId === 'host-c'),
      ).toBe(true);
      expect(dc2.events.some((e) => e.kind === EventKind.EVENT_KIND_AGENT_CONNECTED)).toBe(true);
      expect(dc2.events.some((e) => e.kind === EventKind.EVENT_KIND_RESERVATION_CHANGED)).toBe(
        true,
      ); // host-c sees the drive
      expect(attentions.events.every((e) => e.kind === EventKind.EVENT_KIND_UNIT_ATTENTION)).toBe(
        true,
      );
      expect(loader2.events.length).toBeGreaterThan(0);
      expect(loader2.events.every((e) => e.loaderId === 'loader2')).toBe(true);
      expect(all.ended).toBeUndefined();
    });
  },
);
