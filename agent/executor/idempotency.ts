import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome, outcomeToJSON } from '../../src/gen/prfleet/v1/scsi.js';

/** What happened to an idempotency key: still running, or its recorded outcome. */
interface IdempotencyRecord {
  readonly commandId: string;
  outcome?: Outcome;
}

/** True for a command whose idempotency key the executor enforces: a PROUT that carries one. */
function keyed(command: Command): boolean {
  return command.idempotencyKey !== '' && command.kind?.$case === 'prout';
}

/**
 * The PROUT idempotency keys an executor has run or is running, least recently used forgotten first. A key is
 * held from acceptance; it is released again when nothing reached the device (REFUSED, OS_ERROR), so the caller
 * may retry with it, and kept with its outcome otherwise: a repeat of a PROUT that may have run is refused.
 */
export class IdempotencyMemory {
  private readonly records = new Map<string, IdempotencyRecord>();

  constructor(
    /** Keys remembered at most. */
    readonly capacity: number,
  ) {}

  /** Keys remembered now. */
  get size(): number {
    return this.records.size;
  }

  /** Why `command` must not run because its key is running or ran; undefined when it may. */
  refusal(command: Command): string | undefined {
    if (!keyed(command)) return undefined;
    const key = command.idempotencyKey;
    const seen = this.records.get(key);
    if (seen === undefined) return undefined;
    return seen.outcome === undefined
      ? `duplicate idempotency key ${JSON.stringify(key)}: already running as command ${seen.commandId}`
      : `duplicate idempotency key ${JSON.stringify(key)}: already ran as command ${seen.commandId} with outcome ${outcomeToJSON(seen.outcome)}`;
  }

  /** Holds the key of an accepted `command` (a no-op for commands without one). */
  begin(command: Command): void {
    if (!keyed(command)) return;
    const key = command.idempotencyKey;
    this.records.delete(key);
    this.records.set(key, { commandId: command.commandId });
    while (this.records.size > this.capacity) {
      const oldest = this.records.keys().next().value;
      if (oldest === undefined) break;
      this.records.delete(oldest);
    }
  }

  /** Records how `command` ended; only the command that holds the key changes its record. */
  settle(command: Command, outcome: Outcome): void {
    if (!keyed(command)) return;
    const key = command.idempotencyKey;
    const record = this.records.get(key);
    if (record?.commandId !== command.commandId) return;
    // Nothing reached the device: the caller may try the same key again.
    if (outcome === Outcome.OUTCOME_REFUSED || outcome === Outcome.OUTCOME_OS_ERROR) {
      this.records.delete(key);
    } else {
      record.outcome = outcome;
    }
  }
}
