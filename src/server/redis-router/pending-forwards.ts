import type { Logger } from 'pino';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { unknownResult } from '../../common/result.js';
import { IdleWaiters, type DispatchOptions } from '../router.js';

/** A command this instance forwarded to the instance holding its agent, until the owner's reply settles it. */
export interface PendingForward {
  readonly agentId: string;
  readonly command: Command;
  readonly options: DispatchOptions;
  /** The instance the request went to ('' before it was sent). */
  owner: string;
  /** Sent a second time to where the agent re-attached: never a third. */
  rerouted: boolean;
  /** The caller stopped waiting: its promise is rejected, the entry stays for the result (onResult). */
  abandoned: boolean;
  /** Gives up on the owner's reply (UNKNOWN). */
  timer: NodeJS.Timeout | undefined;
  /** The caller's promise (wrapped to stop listening for its abort). */
  resolve: (result: CommandResult) => void;
  reject: (error: unknown) => void;
}

/**
 * The pending-command table of the caller side: request id → forwarded command. Each entry settles exactly once
 * (a result, an UNKNOWN, or a refusal), whichever comes first; later replies for it find nothing and are dropped.
 */
export class PendingForwards {
  private readonly entries = new Map<string, PendingForward>();
  private readonly idle = new IdleWaiters();

  constructor(private readonly log: Logger) {}

  get size(): number {
    return this.entries.size;
  }

  add(id: string, entry: PendingForward): void {
    this.entries.set(id, entry);
  }

  get(id: string): PendingForward | undefined {
    return this.entries.get(id);
  }

  /** Instances holding at least one of the pending commands. */
  owners(): Set<string> {
    return new Set([...this.entries.values()].map((p) => p.owner));
  }

  /** The command's result: onResult (journal, history) sees it, also when the caller already gave up. */
  settle(id: string, entry: PendingForward, result: CommandResult): void {
    if (!this.remove(id, entry)) return;
    try {
      entry.options.onResult?.(result);
    } catch (err) {
      this.log.error({ err, requestId: id }, 'onResult hook failed');
    }
    entry.resolve(result); // no-op when the caller already got its abort
    this.wakeIfIdle();
  }

  /** Settles as UNKNOWN: the command was handed on and may or may not have run. */
  settleUnknown(id: string, entry: PendingForward, why: string): void {
    this.log.warn(
      { requestId: id, agentId: entry.agentId, owner: entry.owner },
      'forwarded command unanswered: UNKNOWN',
    );
    this.settle(
      id,
      entry,
      unknownResult(
        entry.command,
        entry.agentId,
        `${why}; the command may or may not have run: read the logical unit before retrying`,
      ),
    );
  }

  /** Settles every command sent to `owner` (or every one, without it) as UNKNOWN. */
  settleAllUnknown(why: (entry: PendingForward) => string, owner?: string): void {
    for (const [id, entry] of this.entries) {
      if (owner !== undefined && entry.owner !== owner) continue;
      this.settleUnknown(id, entry, why(entry));
    }
  }

  /** Rejects the caller: nothing ran (or the owner refused it). */
  fail(id: string, entry: PendingForward, error: unknown): void {
    if (!this.remove(id, entry)) return;
    entry.reject(error);
    this.wakeIfIdle();
  }

  /** Resolves true when nothing is pending, or false when `timeoutMs` passes first. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.entries.size === 0) return Promise.resolve(true);
    return this.idle.wait(timeoutMs);
  }

  /** False when `entry` is no longer the one pending under `id` (settled already). */
  private remove(id: string, entry: PendingForward): boolean {
    if (this.entries.get(id) !== entry) return false;
    this.entries.delete(id);
    clearTimeout(entry.timer);
    return true;
  }

  private wakeIfIdle(): void {
    if (this.entries.size === 0) this.idle.wake();
  }
}
