import { describe, expect, it } from 'vitest';
import {
  checkSupported,
  unknownCapabilities,
  capabilitiesFromProto,
  capabilitiesToProto,
} from '../../src/common/capabilities.js';
import {
  CommandValidationError,
  describeCommand,
  toScsiRequest,
} from '../../src/common/command.js';
import {
  buildCommandResult,
  decodeSenseToProto,
  dryRunResult,
  outcomeOf,
  unknownResult,
} from '../../src/common/result.js';
import { profileCapabilities } from '../../src/emulator/index.js';
import { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, PrinAction, ProutAction, PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { encodeReadKeys, encodeSense, type ScsiResponse } from '../../src/scsi/index.js';
import { prin, prout, scsiResponse, timeout, tur } from './helpers.js';

const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? new Uint8Array(0)).toString('hex');
const K1 = 0x1122334455667788n;

function fieldOf(command: Command): string {
  try {
    toScsiRequest(command);
  } catch (e) {
    expect(e).toBeInstanceOf(CommandValidationError);
    return (e as CommandValidationError).field;
  }
  throw new Error('expected CommandValidationError');
}

describe('toScsiRequest', () => {
  it('encodes PROUT REGISTER 0 → K1 exactly as sg_persist does (scsi-pr.md V1)', () => {
    const request = toScsiRequest(
      prout('/dev/sg0', { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: K1 }),
    );
    expect(hex(request.cdb)).toBe('5f000000000000001800');
    expect(hex(request.dataOut)).toBe(`0000000000000000${'1122334455667788'}0000000000000000`);
    expect(request.dataInLength).toBe(0);
    expect(request.timeoutMs).toBe(60_000);
  });

  it('encodes PRIN READ KEYS with the default allocation length, and RESERVE with its type', () => {
    expect(hex(toScsiRequest(prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS)).cdb)).toBe(
      '5e000000000000200000',
    );
    const reserve = toScsiRequest(
      prout('/dev/sg0', {
        action: ProutAction.PROUT_ACTION_RESERVE,
        reservationKey: 0x77n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      }),
    );
    expect(hex(reserve.cdb)).toBe('5f010300000000001800');
  });

  it('takes the timeout from the command', () => {
    expect(toScsiRequest(tur('/dev/sg0', timeout(1500))).timeoutMs).toBe(1500);
    expect(toScsiRequest(tur('/dev/sg0'), { timeoutMs: 5 }).timeoutMs).toBe(5);
  });

  it('encodes INQUIRY, REQUEST SENSE and REPORT LUNS with their defaults', () => {
    const inquiry = Command.fromPartial({
      path: 'p',
      kind: { $case: 'inquiry', value: { evpd: true, pageCode: 0x83 } },
    });
    expect(hex(toScsiRequest(inquiry).cdb)).toBe('12018300ff00');
    const sense = Command.fromPartial({ path: 'p', kind: { $case: 'requestSense', value: {} } });
    expect(toScsiRequest(sense).dataInLength).toBe(252);
    const luns = Command.fromPartial({ path: 'p', kind: { $case: 'reportLuns', value: {} } });
    expect(toScsiRequest(luns).cdb[0]).toBe(0xa0);
    expect(toScsiRequest(luns).dataInLength).toBe(8192);
  });

  it('names the field of bad input', () => {
    expect(fieldOf(Command.fromPartial({ path: 'p' }))).toBe('kind');
    expect(fieldOf(prin('p', PrinAction.PRIN_ACTION_UNSPECIFIED))).toBe('prin.action');
    expect(fieldOf(prin('p', 42 as PrinAction))).toBe('prin.action');
    expect(fieldOf(prout('p', { action: ProutAction.PROUT_ACTION_UNSPECIFIED }))).toBe(
      'prout.action',
    );
    expect(
      fieldOf(prout('p', { action: ProutAction.PROUT_ACTION_RESERVE, reservationKey: 1n })),
    ).toBe('prout.type');
    expect(
      fieldOf(
        prout('p', {
          action: ProutAction.PROUT_ACTION_RESERVE,
          type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
        }),
      ),
    ).toBe('prout.reservation_key');
    expect(
      fieldOf(
        prout('p', {
          action: ProutAction.PROUT_ACTION_RESERVE,
          reservationKey: 1n,
          type: 2 as PrType,
        }),
      ),
    ).toBe('prout.type');
    expect(
      fieldOf(
        prout('p', { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: 1n << 64n }),
      ),
    ).toBe('prout.service_action_key');
    expect(fieldOf(prout('p', { action: ProutAction.PROUT_ACTION_REGISTER, unreg: true }))).toBe(
      'prout.unreg',
    );
    expect(
      fieldOf(
        prout('p', { action: ProutAction.PROUT_ACTION_CLEAR, reservationKey: 1n, allTgPt: true }),
      ),
    ).toBe('prout.all_tg_pt');
    const move = {
      action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
      reservationKey: 1n,
      serviceActionKey: 2n,
      type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
      relativeTargetPort: 1,
    };
    expect(fieldOf(prout('p', move))).toBe('prout.destination');
    expect(fieldOf(prout('p', { ...move, destination: {} }))).toBe('prout.destination');
    expect(
      fieldOf(
        prout('p', {
          ...move,
          destination: { id: { $case: 'iscsi', value: { name: 'iqn.x', isid: 'zz' } } },
        }),
      ),
    ).toBe('prout.destination.iscsi.isid');
    expect(
      fieldOf(
        prout('p', {
          ...move,
          relativeTargetPort: 0,
          destination: { id: { $case: 'sas', value: { sasAddress: 5n } } },
        }),
      ),
    ).toBe('prout.relative_target_port');
    expect(
      fieldOf(
        Command.fromPartial({ path: 'p', kind: { $case: 'inquiry', value: { pageCode: 0x80 } } }),
      ),
    ).toBe('inquiry.page_code');
    expect(
      fieldOf(
        Command.fromPartial({
          path: 'p',
          timeout: { seconds: -1n, nanos: 0 },
          kind: { $case: 'testUnitReady', value: {} },
        }),
      ),
    ).toBe('timeout');
  });

  it('encodes REGISTER AND MOVE with its destination TransportID', () => {
    const request = toScsiRequest(
      prout('p', {
        action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
        reservationKey: 1n,
        serviceActionKey: 2n,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        relativeTargetPort: 2,
        destination: { id: { $case: 'sas', value: { sasAddress: 0x5000c50012345678n } } },
      }),
    );
    expect(request.cdb[1]).toBe(0x07);
    expect(request.dataOut!.length).toBe(24 + 24);
  });

  it('describes commands in SPC words', () => {
    expect(
      describeCommand(prout('p', { action: ProutAction.PROUT_ACTION_PREEMPT_AND_ABORT })),
    ).toBe('PROUT PREEMPT AND ABORT');
    expect(describeCommand(prin('p', PrinAction.PRIN_ACTION_READ_FULL_STATUS))).toBe(
      'PRIN READ FULL STATUS',
    );
  });
});

const response = (r: Partial<ScsiResponse>): ScsiResponse => scsiResponse({ durationMs: 3, ...r });

describe('results', () => {
  it('classifies in scsi-pr.md §10.3 order: host 11h is a conflict whatever the status', () => {
    expect(outcomeOf(response({ status: 0x18 }))).toBe(Outcome.OUTCOME_RESERVATION_CONFLICT);
    expect(outcomeOf(response({ status: 0, hostStatus: 0x11 }))).toBe(
      Outcome.OUTCOME_RESERVATION_CONFLICT,
    );
    expect(outcomeOf(response({ status: 0x18, hostStatus: 0x11 }))).toBe(
      Outcome.OUTCOME_RESERVATION_CONFLICT,
    );
    expect(outcomeOf(response({ hostStatus: 0x03 }))).toBe(Outcome.OUTCOME_TIMEOUT);
    expect(outcomeOf(response({ hostStatus: 0x01 }))).toBe(Outcome.OUTCOME_TRANSPORT_ERROR);
    expect(outcomeOf(response({ status: 0x08 }))).toBe(Outcome.OUTCOME_BUSY);
    expect(outcomeOf(response({ status: 0x28 }))).toBe(Outcome.OUTCOME_TASK_SET_FULL);
    expect(outcomeOf(response({ status: 0x40 }))).toBe(Outcome.OUTCOME_TASK_ABORTED);
    expect(outcomeOf(response({ status: 0x30 }))).toBe(Outcome.OUTCOME_OTHER_STATUS);
    const sense = encodeSense({ senseKey: 5, asc: 0x24, ascq: 0 });
    expect(outcomeOf(response({ status: 2, sense }))).toBe(Outcome.OUTCOME_CHECK_CONDITION);
  });

  it('decodes sense with words and field pointer, and keeps undecodable sense raw', () => {
    const sense = decodeSenseToProto(
      encodeSense({ senseKey: 5, asc: 0x24, ascq: 0, fieldPointer: { inCdb: true, byte: 2 } }),
    );
    expect(sense).toMatchObject({
      senseKey: 5,
      senseKeyName: 'ILLEGAL REQUEST',
      asc: 0x24,
      ascq: 0,
      description: 'invalid field in cdb',
      fieldPointer: { inCdb: true, byte: 2 },
    });
    expect(decodeSenseToProto(new Uint8Array(0))).toBeUndefined();
    const garbage = decodeSenseToProto(new Uint8Array([0x01]));
    expect(garbage?.raw).toEqual(Buffer.from([0x01]));
    expect(garbage?.description).toMatch(/undecodable sense/);
  });

  it('builds a complete result for a GOOD READ KEYS: data, generation, raw bytes', () => {
    const command = prin('/dev/sg0', PrinAction.PRIN_ACTION_READ_KEYS, { commandId: 'k' });
    const data = encodeReadKeys({ generation: 7, keys: [K1, 0x2n] });
    const result = buildCommandResult(
      command,
      response({ dataIn: data, resid: 8192 - data.length }),
      { agentId: 'a', luId: 'naa.1' },
    );
    expect(result).toMatchObject({
      commandId: 'k',
      outcome: Outcome.OUTCOME_GOOD,
      statusName: 'GOOD',
      agentId: 'a',
      path: '/dev/sg0',
      luId: 'naa.1',
      generation: 7,
      resid: 8192 - data.length,
      data: { $case: 'readKeys', value: { generation: 7, keys: [K1, 0x2n], truncated: false } },
    });
    expect(hex(result.cdb)).toBe('5e000000000000200000');
    expect(result.duration).toEqual({ seconds: 0n, nanos: 3_000_000 });
  });

  it('reports undecodable PRIN data in the message without changing the outcome', () => {
    const result = buildCommandResult(
      prin('p', PrinAction.PRIN_ACTION_READ_KEYS),
      response({ dataIn: new Uint8Array([1]) }),
      { agentId: 'a' },
    );
    expect(result.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(result.data).toBeUndefined();
    expect(result.message).toMatch(/undecodable PRIN data/);
  });

  it('makes UNKNOWN and DRY_RUN results', () => {
    const command = prout(
      'p',
      { action: ProutAction.PROUT_ACTION_REGISTER, serviceActionKey: K1 },
      { idempotencyKey: 'i' },
    );
    expect(unknownResult(command, 'a', 'agent vanished')).toMatchObject({
      outcome: Outcome.OUTCOME_UNKNOWN,
      message: 'agent vanished',
      idempotencyKey: 'i',
    });
    const dry = dryRunResult(command, { agentId: 'a' });
    expect(dry.outcome).toBe(Outcome.OUTCOME_DRY_RUN);
    expect(hex(dry.cdb)).toBe('5f000000000000001800');
  });
});

describe('capabilities', () => {
  const changer = capabilitiesToProto(
    'superloader-changer',
    profileCapabilities('superloader-changer'),
  );

  it('round-trips profile capabilities through the proto (SPC code + 1 on the wire)', () => {
    const back = capabilitiesFromProto(changer);
    const original = profileCapabilities('superloader-changer');
    expect(back.proutServiceActions).toEqual(original.proutServiceActions.filter((sa) => sa <= 7));
    expect(back.types).toEqual(original.types);
  });

  it('refuses what the SuperLoader changer cannot do, naming it', () => {
    const move = prout('p', {
      action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
      reservationKey: 1n,
    });
    expect(checkSupported(changer, move)).toBe(
      'superloader-changer does not support PROUT REGISTER AND MOVE',
    );
    const weAr = prout('p', {
      action: ProutAction.PROUT_ACTION_RESERVE,
      reservationKey: 1n,
      type: PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
    });
    expect(checkSupported(changer, weAr)).toMatch(/does not support reservation type WE-AR/);
    const register = prout('p', {
      action: ProutAction.PROUT_ACTION_REGISTER,
      serviceActionKey: 1n,
    });
    expect(checkSupported(changer, register)).toBeUndefined();
    expect(checkSupported(changer, tur('p'))).toBeUndefined();
  });

  it('refuses nothing for an unknown profile: the device decides', () => {
    const move = prout('p', {
      action: ProutAction.PROUT_ACTION_REGISTER_AND_MOVE,
      reservationKey: 1n,
    });
    expect(checkSupported(unknownCapabilities(), move)).toBeUndefined();
    expect(checkSupported(undefined, move)).toBeUndefined();
  });
});
