import type { Logger } from 'pino';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { historyInputOf } from '../history.js';
import type { HistoryEntryInput } from '../store/index.js';
import type { CommandInput, Settle } from './types.js';
import { delay as pause } from '../../common/delay.js';

/**
 * The history entry of a PROUT from the server's own record of what it sent (target, command, principal); the
 * agent's result supplies only the device's answer (outcome, status, sense) and the router's command id.
 */
export function historyEntryOf(input: CommandInput, result: CommandResult): HistoryEntryInput {
  return historyInputOf(
    input.callerKey === undefined
      ? input.command
      : { ...input.command, idempotencyKey: input.callerKey },
    {
      ...result,
      agentId: input.target.agentId,
      path: input.target.path,
      luId: input.target.luId,
      idempotencyKey: input.callerKey ?? input.command.idempotencyKey,
    },
    {
      actor: input.actor,
      luId: input.target.luId,
      ...(input.reason === undefined ? {} : { reason: input.reason }),
    },
  );
}

/** Waits between attempts to write an outcome the store refused (a lost connection is replaced meanwhile). */
const RETRY_DELAYS_MS = [100, 500, 2_000];

/**
 * Writes a PROUT's outcome, retrying a failed write a few times: the command ran, so its record must not be
 * dropped because one database connection died. When the journal and history write still fails, the journal is
 * completed alone (a repeat of the key gets the answer), the entry is logged at error level and `onHistoryGap`
 * is told: the running server appends the missing entry once the store takes it (history-healer.ts), the next
 * start does if it stops first (recordMissingHistory).
 */
export async function settleWithRetry(
  settle: Settle,
  result: CommandResult,
  history: HistoryEntryInput | undefined,
  log: Logger,
  onHistoryGap?: () => void,
): Promise<void> {
  const fields = { commandId: result.commandId, idempotencyKey: result.idempotencyKey };
  for (const delay of [...RETRY_DELAYS_MS, undefined]) {
    try {
      await settle(result, history);
      return;
    } catch (error) {
      if (delay === undefined) {
        if (history === undefined) {
          log.error(
            { ...fields, err: error },
            'journal: completing the entry failed; recovery settles it',
          );
          return;
        }
        log.error(
          { ...fields, err: error, entry: printable(history) },
          'history: append failed; the result was still returned to the caller',
        );
        await settleWithRetry(settle, result, undefined, log);
        onHistoryGap?.();
        return;
      }
      log.warn({ ...fields, err: error }, 'outcome record failed; retrying');
      await pause(delay);
    }
  }
}

function printable(entry: HistoryEntryInput): Record<string, unknown> {
  const hex = (key: bigint) => `0x${key.toString(16).padStart(16, '0')}`;
  return {
    ...entry,
    reservationKey: hex(entry.reservationKey),
    serviceActionKey: hex(entry.serviceActionKey ?? 0n),
  };
}
