import type { Logger } from 'pino';
import type { Command, ConnectRequest } from '../../src/gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';

/**
 * Sends command results on the session. When the server accepts ResultBatch (its Welcome says so), results that
 * finish together (same tick) are gathered and flushed, in order, on the next microtask as one batch: no timer,
 * so no added latency. Otherwise each result goes out at once on its own.
 */
export class ResultBatcher {
  /** Set from the Welcome: the server accepts ResultBatch. */
  batches = false;
  private ready: { command: Command; result: CommandResult }[] = [];

  constructor(
    /** Queues a message on the stream; false when the stream is closed. */
    private readonly send: (message: ConnectRequest['message']) => boolean,
    private readonly log: Logger,
  ) {}

  /** Sends `result` of `command` now, or with the others of this tick when batching. */
  add(command: Command, result: CommandResult): void {
    if (!this.batches) {
      this.ready.push({ command, result });
      this.flush();
      return;
    }
    if (this.ready.length === 0) queueMicrotask(this.flush);
    this.ready.push({ command, result });
  }

  /** Sends what is gathered; results the closed stream cannot take are logged (the server reports them UNKNOWN). */
  readonly flush = (): void => {
    const batch = this.ready;
    if (batch.length === 0) return;
    this.ready = [];
    const delivered =
      batch.length === 1
        ? this.send({ $case: 'result', value: (batch[0] as (typeof batch)[0]).result })
        : this.send({ $case: 'results', value: { results: batch.map((r) => r.result) } });
    if (delivered) return;
    for (const { command } of batch) {
      this.log.warn(
        { commandId: command.commandId, path: command.path },
        'result not delivered: the session ended (the server reports the command as UNKNOWN)',
      );
    }
  };
}
