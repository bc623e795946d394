import { describe, expect, it } from 'vitest';
import { checkResponse, prinHeader, statusProblem } from '../../src/conformance/checks.js';
import { mediumRequest, proutRequest, basicProut } from '../../src/conformance/requests.js';
import { encodeReadKeys, encodeSense, type ScsiResponse } from '../../src/scsi/index.js';

function answer(fields: Partial<ScsiResponse>): ScsiResponse {
  return {
    status: 0,
    sense: new Uint8Array(),
    dataIn: new Uint8Array(),
    resid: 0,
    hostStatus: 0,
    driverStatus: 0,
    durationMs: 0,
    ...fields,
  };
}

const context = {
  generations: new Map<string, number>(),
  identities: undefined,
  profile: 'spc4' as const,
};

describe('conformance checks', () => {
  it("accepts any SCSI status for status 'any', but not a transport failure", () => {
    const illegal = encodeSense({ senseKey: 5, asc: 0x24, ascq: 0 });
    for (const r of [answer({}), answer({ status: 0x18 }), answer({ status: 2, sense: illegal })])
      expect(
        checkResponse({ kind: 'test-unit-ready' }, { status: 'any' }, r, context),
      ).toBeUndefined();
    expect(
      checkResponse(
        { kind: 'test-unit-ready' },
        { status: 'any' },
        answer({ hostStatus: 3 }),
        context,
      ),
    ).toBe('transport error: host status 0x3');
  });

  it('names the status it got and the sense of a CHECK CONDITION', () => {
    expect(statusProblem({}, answer({ status: 0x18 }))).toBe(
      'expected good, got reservation-conflict',
    );
    const illegal = encodeSense({ senseKey: 5, asc: 0x24, ascq: 0 });
    expect(statusProblem({}, answer({ status: 2, sense: illegal }))).toBe(
      'expected good, got check-condition 05/24/00',
    );
    expect(
      statusProblem(
        { sense: { key: 5, asc: 0x26, ascq: 0 } },
        answer({ status: 2, sense: illegal }),
      ),
    ).toBe('expected sense 05/26/00, got 05/24/00');
  });

  it('checks READ KEYS against the PRgeneration a labelled step read', () => {
    const dataIn = encodeReadKeys({ generation: 7, keys: [0xbn, 0xan] });
    const keys = answer({ dataIn });
    expect(prinHeader({ kind: 'read-keys' }, keys)).toEqual({
      generation: 7,
      additionalLength: 16,
    });
    const generations = new Map([['before', 5]]);
    const check = (delta: number) =>
      checkResponse(
        { kind: 'read-keys' },
        { keys: [0xan, 0xbn], generationDelta: { from: 'before', delta } },
        keys,
        { ...context, generations },
      );
    expect(check(2)).toBeUndefined();
    expect(check(1)).toBe('expected PRgeneration 6 (before 5 + 1), got 7');
    expect(checkResponse({ kind: 'read-keys' }, { keys: [0xan] }, keys, context)).toBe(
      'expected keys [0x000000000000000a], got [0x000000000000000a, 0x000000000000000b]',
    );
  });

  it('reports a transport error before anything else', () => {
    expect(checkResponse({ kind: 'test-unit-ready' }, {}, answer({ hostStatus: 7 }), context)).toBe(
      'transport error: host status 0x7',
    );
  });
});

describe('conformance requests', () => {
  it('sends the medium command of the device type', () => {
    expect(mediumRequest('medium-read', 8, 1000).cdb[0]).toBe(0xb8); // READ ELEMENT STATUS
    expect(mediumRequest('medium-write', 8, 1000).cdb[0]).toBe(0x07); // INITIALIZE ELEMENT STATUS
    expect(mediumRequest('medium-read', 1, 1000).cdb[0]).toBe(0x08); // READ(6)
    expect(mediumRequest('medium-write', 0, 1000).dataOut?.length).toBe(512); // WRITE(10)
  });

  it('cuts or pads the parameter list to a forced PARAMETER LIST LENGTH', () => {
    const register = basicProut(0, { serviceActionKey: 1n });
    expect(proutRequest(register, 1000).dataOut?.length).toBe(24);
    const short = proutRequest(register, 1000, 8);
    expect(short.dataOut?.length).toBe(8);
    expect(new DataView(short.cdb.buffer, short.cdb.byteOffset).getUint32(5)).toBe(8);
  });
});
