import type { Logger } from 'pino';
import { describeCommand, proutActionWords } from '../../src/common/command.js';
import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import { outcomeToJSON, type CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { formatKey } from '../../src/scsi/index.js';

/**
 * Logs how a command ended: every PROUT at info with its keys and outcome (the audit trail, style.md §6), other
 * commands at debug.
 */
export function logResult(
  log: Logger,
  command: Command,
  result: CommandResult,
  receivedAt: number,
): void {
  // PRINs log at debug: skip building their fields (describeCommand, enum names) when nobody reads them.
  if (command.kind?.$case !== 'prout' && !log.isLevelEnabled('debug')) return;
  const fields = {
    commandId: command.commandId,
    path: command.path,
    command: describeCommand(command),
    outcome: outcomeToJSON(result.outcome),
    status: result.status,
    ms: Date.now() - receivedAt,
    ...(result.unitAttentions.length > 0
      ? { unitAttentions: result.unitAttentions.map((ua) => ua.sense?.description ?? '') }
      : {}),
    ...(result.message === '' ? {} : { message: result.message }),
  };
  if (command.kind?.$case === 'prout') {
    const p = command.kind.value;
    log.info(
      {
        ...fields,
        action: proutActionWords(p.action),
        key: formatKey(p.reservationKey),
        serviceActionKey: formatKey(p.serviceActionKey),
        type: p.type,
        ...(command.idempotencyKey === '' ? {} : { idempotencyKey: command.idempotencyKey }),
      },
      'prout done',
    );
  } else {
    log.debug(fields, 'command done');
  }
}

/** Logs a command refused at submission (it never got a task, so logResult does not see it). */
export function logRefusal(log: Logger, command: Command, message: string): void {
  log.info(
    {
      commandId: command.commandId,
      path: command.path,
      command: describeCommand(command),
      message,
    },
    'command refused',
  );
}
