import type { ScsiResponse } from '../../src/scsi/exchange.js';
import { pino } from 'pino';
import { createExecutor, type Executor, type ExecutorOptions } from '../../agent/executor.js';
import type { EmulatedHost } from '../../agent/fabric.js';
import { msToDuration } from '../../src/common/command.js';
import { Command, type DeepPartial, type ProutCommand } from '../../src/gen/prfleet/v1/agent.js';
import type { PrinAction, ProutAction } from '../../src/gen/prfleet/v1/scsi.js';

/** A silent logger for tests. */
export const silentLog = pino({ level: 'silent' });

let nextId = 0;

/** A PRIN command for `path`. */
export function prin(path: string, action: PrinAction, extra: Partial<Command> = {}): Command {
  return Command.fromPartial({
    commandId: `c${++nextId}`,
    path,
    kind: { $case: 'prin', value: { action, allocationLength: 0 } },
    ...extra,
  });
}

/** A PROUT command for `path`. */
export function prout(
  path: string,
  fields: DeepPartial<ProutCommand> & { action: ProutAction },
  extra: Partial<Command> = {},
): Command {
  return Command.fromPartial({
    commandId: `c${++nextId}`,
    path,
    kind: { $case: 'prout', value: fields },
    ...extra,
  });
}

/** A TEST UNIT READY for `path`. */
export function tur(path: string, extra: Partial<Command> = {}): Command {
  return Command.fromPartial({
    commandId: `c${++nextId}`,
    path,
    kind: { $case: 'testUnitReady', value: {} },
    ...extra,
  });
}

/** Command.timeout of `ms`. */
export const timeout = (ms: number) => ({ timeout: msToDuration(ms) });

/** An executor over one emulated host, allowed on all its paths. */
export function hostExecutor(host: EmulatedHost, options: Partial<ExecutorOptions> = {}): Executor {
  const executor = createExecutor({
    agentId: host.id,
    transport: host.transport,
    log: silentLog,
    ...options,
  });
  executor.setPaths(host.paths.map((p) => ({ path: p.path, luId: p.logicalUnitId })));
  return executor;
}

/** A device answer: GOOD with no data unless `r` says otherwise. */
export const scsiResponse = (r: Partial<ScsiResponse> = {}): ScsiResponse => ({
  status: 0,
  sense: new Uint8Array(0),
  dataIn: new Uint8Array(0),
  resid: 0,
  hostStatus: 0,
  driverStatus: 0,
  durationMs: 0,
  ...r,
});
