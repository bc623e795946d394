import { describe, expect, it } from 'vitest';
import { directServiceDefinition } from '../../src/common/service-definition.js';
import {
  AgentServiceDefinition,
  ConnectRequest,
  ConnectResponse,
  Command,
} from '../../src/gen/prfleet/v1/agent.js';
import { ControlServiceDefinition, ReadKeysResponse } from '../../src/gen/prfleet/v1/control.js';
import {
  AuditResponse,
  FleetServiceDefinition,
  LogicalUnitReport,
} from '../../src/gen/prfleet/v1/fleet.js';
import { CommandResult, Outcome, PrinAction } from '../../src/gen/prfleet/v1/scsi.js';

const bytesOf = (u: Uint8Array) => Buffer.from(u).toString('hex');

const result = CommandResult.fromPartial({
  commandId: 'c-1',
  outcome: Outcome.OUTCOME_GOOD,
  statusName: 'GOOD',
  cdb: Buffer.from([0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]),
  dataIn: Buffer.from([0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x77]),
  agentId: 'host-a',
  path: '/dev/sg1',
  luId: 'lu-1',
  generation: 7,
  data: {
    $case: 'readKeys',
    value: { generation: 7, keys: [0x77n], additionalLength: 8, truncated: false },
  },
  startedAt: new Date(1_700_000_000_000),
  duration: { seconds: 0n, nanos: 5000 },
});

describe('directServiceDefinition', () => {
  it('encodes complete messages to exactly the bytes nice-grpc would send (encode of fromPartial)', () => {
    const agent = directServiceDefinition(AgentServiceDefinition).connect;
    const up = ConnectRequest.fromPartial({ message: { $case: 'result', value: result } });
    expect(bytesOf(agent.requestSerialize(up))).toBe(
      bytesOf(ConnectRequest.encode(ConnectRequest.fromPartial(up)).finish()),
    );
    const command = Command.fromPartial({
      commandId: 'c-1',
      path: '/dev/sg1',
      timeout: { seconds: 60n, nanos: 0 },
      kind: {
        $case: 'prin',
        value: { action: PrinAction.PRIN_ACTION_READ_KEYS, allocationLength: 0 },
      },
    });
    const down = ConnectResponse.fromPartial({ message: { $case: 'command', value: command } });
    expect(bytesOf(agent.responseSerialize(down))).toBe(
      bytesOf(ConnectResponse.encode(down).finish()),
    );
    const readKeys = directServiceDefinition(ControlServiceDefinition).readKeys;
    expect(bytesOf(readKeys.responseSerialize({ result }))).toBe(
      bytesOf(ReadKeysResponse.encode({ result }).finish()),
    );
    const report = LogicalUnitReport.fromPartial({
      luId: 'lu-1',
      holderKey: 0x77n,
      reserved: true,
      paths: [{ agentId: 'a', path: '/dev/sg1' }],
    });
    const audit = directServiceDefinition(FleetServiceDefinition).audit;
    expect(bytesOf(audit.responseSerialize({ event: { $case: 'report', value: report } }))).toBe(
      bytesOf(
        AuditResponse.encode(
          AuditResponse.fromPartial({ event: { $case: 'report', value: report } }),
        ).finish(),
      ),
    );
  });

  it('still fills in partial messages as fromPartial does (a missing string is empty, not "undefined")', () => {
    const agent = directServiceDefinition(AgentServiceDefinition).connect;
    const partial = {
      message: {
        $case: 'result' as const,
        value: { commandId: 'c-2', outcome: Outcome.OUTCOME_GOOD },
      },
    };
    const bytes = agent.requestSerialize(partial);
    expect(bytesOf(bytes)).toBe(
      bytesOf(ConnectRequest.encode(ConnectRequest.fromPartial(partial)).finish()),
    );
    const decoded = ConnectRequest.decode(bytes);
    expect(decoded.message?.$case === 'result' && decoded.message.value.agentId).toBe('');
    // Only a string missing: the stock writer would write the text "undefined" here.
    const cancel = { message: { $case: 'cancel' as const, value: {} } };
    const cancelBytes = agent.responseSerialize(cancel);
    const back = ConnectResponse.decode(cancelBytes);
    expect(back.message?.$case === 'cancel' && back.message.value.commandId).toBe('');
    expect(cancelBytes.length).toBe(
      ConnectResponse.encode(ConnectResponse.fromPartial(cancel)).finish().length,
    );
    // Partial nested values (a path without its booleans) too.
    const report = { luId: 'lu-1', paths: [{ agentId: 'a' }] };
    const audit = directServiceDefinition(FleetServiceDefinition).audit;
    const auditBytes = audit.responseSerialize({ event: { $case: 'report', value: report } });
    expect(bytesOf(auditBytes)).toBe(
      bytesOf(
        AuditResponse.encode(
          AuditResponse.fromPartial({ event: { $case: 'report', value: report } }),
        ).finish(),
      ),
    );
  });

  it('gives the same bytes whatever was encoded before (the writer is reused between messages)', () => {
    const agent = directServiceDefinition(AgentServiceDefinition).connect;
    const up = ConnectRequest.fromPartial({ message: { $case: 'result', value: result } });
    const expected = bytesOf(ConnectRequest.encode(up).finish());
    const first = agent.requestSerialize(up);
    // A partial message fails the direct encode half-way; the next message must not see its leftovers.
    agent.requestSerialize({
      message: { $case: 'result', value: { commandId: 'c-3', outcome: 1 } },
    });
    // A message larger than the kept writer, then a small one.
    const big = { ...result, message: 'x'.repeat(100_000) };
    const bigBytes = agent.requestSerialize({ message: { $case: 'result', value: big } });
    expect(bigBytes.length).toBeGreaterThan(100_000);
    const again = agent.requestSerialize(up);
    expect(bytesOf(again)).toBe(expected);
    // Each call returns its own bytes: the first result was not overwritten by the later encodes.
    expect(bytesOf(first)).toBe(expected);
    expect(again.buffer).not.toBe(first.buffer);
  });

  it('decodes what it encodes, for requests and responses', () => {
    const agent = directServiceDefinition(AgentServiceDefinition).connect;
    const up = ConnectRequest.fromPartial({ message: { $case: 'result', value: result } });
    expect(agent.requestDeserialize(agent.requestSerialize(up))).toEqual(up);
  });
});
