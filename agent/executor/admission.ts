import { CommandValidationError, toScsiRequest } from '../../src/common/command.js';
import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import type { ScsiRequest } from '../../src/scsi/index.js';
import type { IdempotencyMemory } from './idempotency.js';

/** A path the executor may act on, and the LU behind it (copied into results). */
export interface ExecutorPath {
  /** Device node, e.g. "/dev/sg3". */
  readonly path: string;
  /** Logical unit identity from discovery. */
  readonly luId: string;
}

/** A command the executor takes: the request built from it, and the LU of its path. */
export interface Admitted {
  readonly refusal: undefined;
  readonly request: ScsiRequest;
  readonly luId: string;
}

/** A command the executor refuses, and why. */
export interface Refused {
  readonly refusal: string;
  /** The LU of its path, when the path is known. */
  readonly luId: string;
}

/** What the admission checks read from the executor. */
export interface AdmissionOptions {
  /** Commands accepted but unfinished, over all paths; more are refused. */
  readonly queueCapacity: number;
  /** Device timeout when a command carries none, ms. */
  readonly defaultTimeoutMs: number;
  readonly idempotency: IdempotencyMemory;
  /** Commands in flight by id, this one not yet among them. */
  readonly tasks: ReadonlyMap<string, unknown>;
  /** Commands in flight, this one counted. */
  inFlight(): number;
}

const refused = (refusal: string, luId = ''): Refused => ({ refusal, luId });

/**
 * Decides whether a command may run, before anything is queued: its path is on the allow-list (the inventory
 * given to setPaths), its id is not already in flight, it is a valid typed command (the CDB is built only here,
 * by toScsiRequest: no raw CDB exists), its PROUT idempotency key has not run, and the queue has room.
 */
export class CommandAdmission {
  private paths = new Map<string, ExecutorPath>();

  constructor(private readonly options: AdmissionOptions) {}

  /** Replaces the paths commands may use. */
  setPaths(list: Iterable<ExecutorPath>): void {
    this.paths = new Map([...list].map((p) => [p.path, p]));
  }

  /** Admits or refuses `command`; throws only on a bug (an error other than CommandValidationError). */
  check(command: Command): Admitted | Refused {
    const target = this.paths.get(command.path);
    if (!target)
      return refused(`path ${JSON.stringify(command.path)} is not in this agent's inventory`);
    const { luId } = target;
    if (this.options.tasks.has(command.commandId))
      return refused(`command id ${command.commandId} is already in flight`, luId);
    let request: ScsiRequest;
    try {
      request = toScsiRequest(command, { timeoutMs: this.options.defaultTimeoutMs });
    } catch (e) {
      if (e instanceof CommandValidationError)
        return refused(`invalid command: ${e.field}: ${e.message}`, luId);
      throw e;
    }
    const duplicate = this.options.idempotency.refusal(command);
    if (duplicate !== undefined) return refused(duplicate, luId);
    if (this.options.inFlight() > this.options.queueCapacity)
      return refused(`agent queue full (${this.options.queueCapacity} commands)`, luId);
    return { refusal: undefined, request, luId };
  }
}
