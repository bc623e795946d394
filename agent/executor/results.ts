import { osErrorResult, unknownResult } from '../../src/common/result.js';
import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import type { ScsiRequest } from '../../src/scsi/index.js';
import type { TransportError } from '../transport/transport.js';
import type { TaskContext as Context } from './task.js';

/** Why an errno stopped a command, in words an operator can act on. */
export function explainErrno(code: string): string {
  switch (code) {
    case 'EPERM':
      return 'operation not permitted: the agent needs CAP_SYS_RAWIO for PRIN/PROUT (scsi-pr.md §10.4)';
    case 'EACCES':
      return 'permission denied: the agent cannot open the node read-write';
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      return 'the device node is gone; the agent will rescan';
    case 'EBUSY':
      return 'the device is busy (opened exclusively elsewhere)';
    case 'EINVAL':
      return 'the kernel rejected the SG_IO request as invalid';
    case 'ENOMEM':
      return 'the kernel could not allocate buffers for the command';
    case 'EIO':
      return 'input/output error from the driver';
    default:
      return 'the operating system refused the command';
  }
}

/** The result of a command whose device node failed (open or ioctl errno): OUTCOME_OS_ERROR, explained. */
export function transportErrorResult(
  command: Command,
  context: Context,
  error: TransportError,
): CommandResult {
  return osErrorResult(
    command,
    context,
    error.errno,
    `${error.code} on ${error.path}: ${explainErrno(error.code)} (${error.message})`,
  );
}

/**
 * The result of a command the device never answered within its timeout plus `graceMs` (a stuck ioctl):
 * OUTCOME_TIMEOUT with the bytes sent, since the command may still complete.
 */
export function stuckResult(
  command: Command,
  context: Context,
  request: ScsiRequest,
  graceMs: number,
  startedAt: Date,
): CommandResult {
  return CommandResult.fromPartial({
    commandId: command.commandId,
    agentId: context.agentId,
    path: command.path,
    luId: context.luId,
    idempotencyKey: command.idempotencyKey,
    outcome: Outcome.OUTCOME_TIMEOUT,
    cdb: Buffer.from(request.cdb),
    dataOut: Buffer.from(request.dataOut ?? new Uint8Array(0)),
    message: `no answer from the device within ${request.timeoutMs + graceMs} ms; the command may still complete`,
    startedAt,
  });
}

/**
 * The result of a command that failed inside the agent (a bug, not the device): the device may or may not have
 * seen it, so OUTCOME_UNKNOWN rather than a guess.
 */
export function agentErrorResult(
  command: Command,
  context: Context,
  error: unknown,
  startedAt: Date | undefined,
): CommandResult {
  return {
    ...unknownResult(command, context.agentId, `agent error: ${(error as Error).message}`),
    ...context,
    ...(startedAt === undefined ? {} : { startedAt }),
  };
}
