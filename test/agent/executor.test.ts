import { AsyncLocalStorage } from 'node:async_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmulatedFabric, type EmulatedFabric } from '../../agent/fabric.js';
import { createExecutor } from '../../agent/executor.js';
import type { ScsiTransport, TransportError } from '../../agent/transport/transport.js';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction, ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { hostExecutor, prin, prout, scsiResponse, silentLog, timeout, tur } from './helpers.js';

const KEY_A = 0xaaaan;
const KEY_B = 0xbbbbn;

/** Two hosts, one changer LU; host-a has two paths to it (two nexuses). */
function fabricOf(): EmulatedFabric {
  return createEmulatedFabric({
    loaders: [
      {
        id: 'l1',
        changer: { id: 'changer', profile: 'superloader-changer', serial: 'PM1' },
        drives: [{ id: 'drive', profile: 'lto-drive', serial: 'HU1' }],
      },
    ],
    hosts: [
      {
        id: 'host-a',
        initiatorPorts: ['sas:0x5000000000000a01', 'sas:0x5000000000000a02'],
        paths: [
          {
            node: '/dev/sg0',
            lu: 'changer',
            initiatorPort: 'sas:0x5000000000000a01',
            relativeTargetPort: 1,
          },
          {
            node: '/dev/sg1',
            lu: 'changer',
            initiatorPort: 'sas:0x5000000000000a02',
            relativeTargetPort: 2,
          },
          {
            node: '/dev/sg2',
            lu: 'drive',
            initiatorPort: 'sas:0x5000000000000a01',
            relativeTargetPort: 1,
          },
        ],
      },
      {
        id: 'host-b',
        initiatorPorts: ['sas:0x5000000000000b01'],
        paths: [
          {
            node: '/dev/sg0',
            lu: 'changer',
            initiatorPort: 'sas:0x5000000000000b01',
            relativeTargetPort: 1,
          },
        ],
      },
    ],
  });
}

const register = (path: string, key: bigint, extra: Partial<Command> = {}) =>
  prout(path, { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: key }, extra);
const reserve = (path: string, key: bigint) =>
  prout(path, {
    action: ProutAction.PROUT_ACTION_RESERVE,
    reservationKey: key,
    type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
  });

describe('executor', () => {
  let fabric: EmulatedFabric;
  afterEach(() => fabric.close());

  it('runs PRIN and PROUT and decodes the data: keys, reservation, generation', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    expect((await a.submit(register('/dev/sg0', KEY_A))).outcome).toBe(Outcome.OUTCOME_GOOD);
    expect((await a.submit(reserve('/dev/sg0', KEY_A))).outcome).toBe(Outcome.OUTCOME_GOOD);
    const keys = await a.submit(prin('/dev/sg1', PrinAction.PRIN_ACTION_READ_KEYS));
    expect(keys.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(keys.data).toMatchObject({ $case: 'readKeys', value: { keys: [KEY_A] } });
    expect(keys.generation).toBe(1);
    expect(keys.luId).toBe('changer');
    expect(keys.agentId).toBe('host-a');
    expect(keys.cdb.toString('hex')).toBe('5e000000000000200000');
    const res = await a.submit(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_RESERVATION));
    expect(res.data).toMatchObject({
      $case: 'readReservation',
      value: { reserved: true, key: KEY_A, type: PrType.PR_TYPE_EXCLUSIVE_ACCESS },
    });
  });

  it('returns RESERVATION CONFLICT as a result', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    const b = hostExecutor(fabric.host('host-b'));
    await a.submit(register('/dev/sg0', KEY_A));
    await a.submit(reserve('/dev/sg0', KEY_A));
    await b.submit(register('/dev/sg0', KEY_B));
    const conflict = await b.submit(reserve('/dev/sg0', KEY_B));
    expect(conflict.outcome).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    expect(conflict.status).toBe(0x18);
    expect(conflict.statusName).toMatch(/RESERVATION CONFLICT/i);
    expect(conflict.dataOut.length).toBe(24);
  });

  it('refuses paths outside its inventory and commands that fail validation, sending nothing', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    const unknown = await a.submit(tur('/dev/sg9'));
    expect(unknown.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(unknown.message).toMatch(/not in this agent's inventory/);
    const empty = await a.submit(Command.fromPartial({ commandId: 'x1', path: '/dev/sg0' }));
    expect(empty.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(empty.message).toMatch(/invalid command: kind/);
    const noAction = await a.submit(
      prout('/dev/sg0', { action: ProutAction.PROUT_ACTION_UNSPECIFIED }),
    );
    expect(noAction.message).toMatch(/prout\.action/);
    const noKey = await a.submit(
      prout('/dev/sg0', {
        action: ProutAction.PROUT_ACTION_RESERVE,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      }),
    );
    expect(noKey.message).toMatch(/prout\.reservation_key/);
    // Nothing reached the LU.
    const snapshot = JSON.stringify(fabric.logicalUnit('changer').snapshot(), (_k, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
    expect(snapshot).not.toMatch(/0x000000000000aaaa/);
    const keys = await a.submit(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS));
    expect(keys.data).toMatchObject({ value: { keys: [] } });
    expect(keys.generation).toBe(0);
  });

  it('runs one command at a time per path, in arrival order, and paths in parallel', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(40);
    const a = hostExecutor(host, { pathConcurrency: 2 });
    const t0 = Date.now();
    const onPath0 = [
      register('/dev/sg0', KEY_A),
      reserve('/dev/sg0', KEY_A),
      prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_RESERVATION),
    ];
    const onPath2 = tur('/dev/sg2');
    const results = await Promise.all([...onPath0.map((c) => a.submit(c)), a.submit(onPath2)]);
    // In order: the RESERVE saw the REGISTER, the READ RESERVATION saw the RESERVE.
    expect(results.slice(0, 3).map((r) => r.outcome)).toEqual([
      Outcome.OUTCOME_GOOD,
      Outcome.OUTCOME_GOOD,
      Outcome.OUTCOME_GOOD,
    ]);
    expect(results[2]!.data).toMatchObject({ value: { reserved: true } });
    const starts = results.map((r) => r.startedAt!.getTime());
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(35);
    expect(starts[2]! - starts[1]!).toBeGreaterThanOrEqual(35);
    // The other path did not wait behind path 0: it started before path 0's second command could (ordering, not
    // a time bound: a loaded machine may stall either).
    expect(starts[3]!).toBeLessThan(starts[1]!);
    expect(starts[3]! - t0).toBeGreaterThanOrEqual(0);
  });

  it('bounds the paths worked on at once with the semaphore', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(40);
    const a = hostExecutor(host, { pathConcurrency: 1 });
    const [r0, r2] = await Promise.all([a.submit(tur('/dev/sg0')), a.submit(tur('/dev/sg2'))]);
    expect(r2.startedAt!.getTime() - r0.startedAt!.getTime()).toBeGreaterThanOrEqual(35);
  });

  it('retries UNIT ATTENTION and lists the consumed ones (REGISTRATIONS PREEMPTED is news)', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    const b = hostExecutor(fabric.host('host-b'));
    await a.submit(register('/dev/sg0', KEY_A));
    await b.submit(register('/dev/sg0', KEY_B));
    await b.submit(reserve('/dev/sg0', KEY_B));
    const preempt = await a.submit(
      prout('/dev/sg0', {
        action: ProutAction.PROUT_ACTION_PREEMPT,
        reservationKey: KEY_A,
        serviceActionKey: KEY_B,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      }),
    );
    expect(preempt.outcome).toBe(Outcome.OUTCOME_GOOD);
    const seen = await b.submit(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS));
    expect(seen.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(seen.data).toMatchObject({ value: { keys: [KEY_A] } });
    expect(seen.unitAttentions).toHaveLength(1);
    expect(seen.unitAttentions[0]!.sense).toMatchObject({
      senseKey: 6,
      asc: 0x2a,
      ascq: 0x05,
      description: 'registrations preempted',
    });
    // Consumed once: the next command is clean.
    expect((await b.submit(tur('/dev/sg0'))).unitAttentions).toHaveLength(0);
  });

  it('stops retrying after the bound and answers the UNIT ATTENTION itself', async () => {
    fabric = fabricOf();
    const b = hostExecutor(fabric.host('host-b'), { unitAttentionRetries: 1 });
    await b.submit(tur('/dev/sg0')); // the LU now knows the nexus
    const lu = fabric.logicalUnit('changer');
    const nexus = {
      transportId: fabric.host('host-b').paths[0]!.initiatorPort,
      relativeTargetPort: 1,
    };
    lu.nexusLoss(nexus); // 29h/07h
    lu.reset(); // 29h/xx
    const result = await b.submit(tur('/dev/sg0'));
    expect(result.outcome).toBe(Outcome.OUTCOME_CHECK_CONDITION);
    expect(result.sense?.senseKey).toBe(6);
    expect(result.unitAttentions).toHaveLength(1);
    expect(result.unitAttentions[0]!.sense).toMatchObject({ asc: 0x29, ascq: 0x07 });
  });

  it('refuses a PROUT whose idempotency key it already ran, with the recorded outcome', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    const first = await a.submit(register('/dev/sg0', KEY_A, { idempotencyKey: 'reg-1' }));
    expect(first.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(first.idempotencyKey).toBe('reg-1');
    const again = await a.submit(
      prout(
        '/dev/sg0',
        {
          action: ProutAction.PROUT_ACTION_REGISTER,
          reservationKey: KEY_A,
          serviceActionKey: 0x1234n,
        },
        { idempotencyKey: 'reg-1' },
      ),
    );
    expect(again.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(again.message).toContain(
      `already ran as command ${first.commandId} with outcome OUTCOME_GOOD`,
    );
    const keys = await a.submit(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS));
    expect(keys.data).toMatchObject({ value: { keys: [KEY_A] } });
    expect(keys.generation).toBe(1);
  });

  it('refuses a duplicate idempotency key while the first is still running', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(30);
    const a = hostExecutor(host);
    const [first, second] = await Promise.all([
      a.submit(register('/dev/sg0', KEY_A, { idempotencyKey: 'k' })),
      a.submit(register('/dev/sg1', KEY_A, { idempotencyKey: 'k' })),
    ]);
    expect(first.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(second.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(second.message).toMatch(/already running as command/);
  });

  it('reports a device slower than the command timeout as OUTCOME_TIMEOUT', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(300);
    const a = hostExecutor(host);
    const t0 = Date.now();
    const result = await a.submit(tur('/dev/sg0', timeout(50)));
    expect(result.outcome).toBe(Outcome.OUTCOME_TIMEOUT);
    expect(result.hostStatus).toBe(0x03);
    // Answered at the timeout, not when the device finally answers (300 ms).
    expect(Date.now() - t0).toBeLessThan(300);
  });

  it('refuses a command whose timeout passes while it waits in the path queue', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(150);
    const a = hostExecutor(host);
    const [slow, late] = await Promise.all([
      a.submit(tur('/dev/sg0')),
      a.submit(tur('/dev/sg0', timeout(40))),
    ]);
    expect(slow.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(late.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(late.message).toMatch(/timed out before submission/);
  });

  it('drops a cancelled command not yet submitted, but not a running one', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    host.transport.setLatency(60);
    const a = hostExecutor(host);
    const running = tur('/dev/sg0');
    const queued = register('/dev/sg0', KEY_A);
    const p1 = a.submit(running);
    const p2 = a.submit(queued);
    await new Promise((r) => setTimeout(r, 10));
    expect(a.cancel(queued.commandId)).toBe(true);
    expect(a.cancel(running.commandId)).toBe(false);
    expect(a.cancel('no-such-command')).toBe(false);
    const [r1, r2] = await Promise.all([p1, p2]);
    expect(r1.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(r2.outcome).toBe(Outcome.OUTCOME_REFUSED);
    expect(r2.message).toBe('cancelled before submission');
    const keys = await a.submit(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS));
    expect(keys.data).toMatchObject({ value: { keys: [] } });
  });

  it('turns a vanished node into OUTCOME_OS_ERROR with errno and tells the agent', async () => {
    fabric = fabricOf();
    const host = fabric.host('host-a');
    const failed: TransportError[] = [];
    const a = hostExecutor(host, { onPathError: (_p, e) => failed.push(e) });
    host.transport.failPath('/dev/sg1');
    const result = await a.submit(tur('/dev/sg1'));
    expect(result.outcome).toBe(Outcome.OUTCOME_OS_ERROR);
    expect(result.errno).toBe(19);
    expect(result.message).toMatch(/ENODEV on \/dev\/sg1: the device node is gone/);
    expect(failed.map((e) => e.path)).toEqual(['/dev/sg1']);
    host.transport.restorePath('/dev/sg1');
    expect((await a.submit(tur('/dev/sg1'))).outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('completes a queued task of a PREEMPT AND ABORT victim with TASK ABORTED', async () => {
    fabric = fabricOf();
    const a = hostExecutor(fabric.host('host-a'));
    const hostB = fabric.host('host-b');
    const b = hostExecutor(hostB);
    await a.submit(register('/dev/sg0', KEY_A));
    await b.submit(register('/dev/sg0', KEY_B));
    await b.submit(reserve('/dev/sg0', KEY_B));
    hostB.transport.setLatency(200);
    const victim = b.submit(tur('/dev/sg0'));
    await new Promise((r) => setTimeout(r, 20));
    const abort = await a.submit(
      prout('/dev/sg0', {
        action: ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT,
        reservationKey: KEY_A,
        serviceActionKey: KEY_B,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      }),
    );
    expect(abort.outcome).toBe(Outcome.OUTCOME_GOOD);
    const result = await victim;
    expect(result.outcome).toBe(Outcome.OUTCOME_TASK_ABORTED);
    expect(result.status).toBe(0x40);
  });

  it('runs each queued command in the async context it was submitted in (its trace), with keepCallerContext', async () => {
    const caller = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const recording = (keepCallerContext: boolean) => {
      const transport: ScsiTransport = {
        kind: 'sgio',
        open: async (path) => ({
          path,
          execute: async () => {
            await new Promise((r) => setTimeout(r, 5));
            seen.push(caller.getStore());
            return scsiResponse();
          },
          close: async () => undefined,
        }),
      };
      const executor = createExecutor({
        agentId: 'x',
        transport,
        log: silentLog,
        keepCallerContext,
      });
      executor.setPaths([{ path: '/dev/sg0', luId: 'lu' }]);
      return executor;
    };
    // Three commands queue on one path: the first starts the queue, the others wait behind it.
    const submitThree = (executor: ReturnType<typeof recording>) =>
      Promise.all(
        ['first', 'second', 'third'].map((name) =>
          caller.run(name, () => executor.submit(tur('/dev/sg0'))),
        ),
      );
    await submitThree(recording(true));
    expect(seen).toEqual(['first', 'second', 'third']);
    seen.length = 0;
    await submitThree(recording(false));
    expect(seen).toEqual(['first', 'first', 'first']); // why the option exists
  });

  it('stops waiting for a device that never answers, reports OUTCOME_TIMEOUT, and keeps the path busy until it lets go', async () => {
    fabric = fabricOf();
    let release!: () => void;
    const hung = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    // A device whose ioctl never returns (LIO's PREEMPT AND ABORT through tcm_loop does this, per H6).
    const stuck: ScsiTransport = {
      kind: 'sgio',
      open: async (path) => ({
        path,
        execute: async () => {
          calls++;
          await hung;
          return scsiResponse();
        },
        close: async () => undefined,
      }),
    };
    const executor = createExecutor({
      agentId: 'x',
      transport: stuck,
      log: silentLog,
      watchdogGraceMs: 30,
    });
    executor.setPaths([{ path: '/dev/sg0', luId: 'lu' }]);
    const first = await executor.submit(tur('/dev/sg0', timeout(20)));
    expect(first.outcome).toBe(Outcome.OUTCOME_TIMEOUT);
    // The device gets what is left of the 20 ms budget (opening it may use a millisecond) plus the 30 ms grace.
    const waited = Number(/no answer from the device within (\d+) ms/.exec(first.message)?.[1]);
    expect(waited).toBeGreaterThan(30);
    expect(waited).toBeLessThanOrEqual(50);
    const second = executor.submit(tur('/dev/sg0', timeout(5_000)));
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(1); // still waiting behind the hung command
    release();
    expect((await second).outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(calls).toBe(2);
  });
});
