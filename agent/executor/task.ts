import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import type { ScsiRequest } from '../../src/scsi/index.js';
import type { ResultContext } from '../../src/common/result.js';

/** One accepted command on its way through the executor: queued, submitted to its device, then done. */
export interface Task {
  readonly command: Command;
  readonly request: ScsiRequest;
  readonly luId: string;
  readonly receivedAt: number;
  readonly deadline: number;
  /**
   * Aborts the open and submission when the command is cancelled while queued; made on first need (a controller
   * costs ~4 µs, and nothing can abort a command once submitted).
   */
  abort: AbortController | undefined;
  state: 'queued' | 'submitted' | 'done';
  resolve(result: CommandResult): void;
  /** The task's run bound to the submitter's async context (ExecutorOptions.keepCallerContext). */
  runInCallerContext: (() => Promise<void>) | undefined;
}

/** Who runs a command and where, every field set (the unknown result spreads it over its own). */
export type TaskContext = Required<ResultContext>;

export function resultContext(agentId: string, command: Command, luId = ''): TaskContext {
  return { agentId, path: command.path, luId };
}

/** The abort controller of `task`, made on first need. */
export function abortOf(task: Pick<Task, 'abort'>): AbortController {
  return (task.abort ??= new AbortController());
}
