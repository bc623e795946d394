import type { Logger } from 'pino';
import { buildCommandResult, refusedResult } from '../../src/common/result.js';
import type { CommandResult } from '../../src/gen/prfleet/v1/scsi.js';
import { classifyResponse, type ScsiRequest, type ScsiResponse } from '../../src/scsi/index.js';
import { TransportError, type ScsiDevice } from '../transport/transport.js';
import type { DeviceCache } from './devices.js';
import type { Watchdog } from './watchdog.js';
import { agentErrorResult, stuckResult, transportErrorResult } from './results.js';
import { resultContext, type Task, type TaskContext } from './task.js';

/** What running a task needs from its executor. */
export interface RunTaskDeps {
  readonly agentId: string;
  readonly log: Logger;
  readonly devices: DeviceCache;
  /** UNIT ATTENTIONs consumed and retried per command before the UA itself is the answer. */
  readonly unitAttentionRetries: number;
  /** Extra wait past the command timeout before giving up on a device that never answers, ms. */
  readonly watchdogGraceMs: number;
  /** Counts that wait for every command the executor submitted. */
  readonly watchdog: Watchdog;
  readonly onPathError?: ((path: string, error: TransportError) => void) | undefined;
  readonly onPathAnswer?: ((path: string) => void) | undefined;
  /** Answers the task (once: later calls are ignored). */
  finish(task: Task, result: CommandResult): void;
}

/**
 * Runs the request, waiting at most timeout + grace for a device that never answers (the executor's one
 * watchdog timer counts it). One promise settled by whichever comes first (no race of two promises and an async
 * frame per command).
 */
export function executeWithWatchdog(
  dev: ScsiDevice,
  request: ScsiRequest,
  signal: AbortSignal | undefined,
  graceMs: number,
  watchdog: Watchdog,
): Promise<{ response: ScsiResponse } | { stuck: Promise<unknown> }> {
  return new Promise((resolve, reject) => {
    const running = dev.execute(request, signal === undefined ? {} : { signal });
    const watched = watchdog.watch(request.timeoutMs + graceMs, () =>
      resolve({ stuck: running.catch(() => undefined) }),
    );
    running.then(
      (response) => {
        watchdog.unwatch(watched);
        resolve({ response });
      },
      // Devices reject with Errors (TransportError, AbortError); passed on as they are.
      (error: Error) => {
        watchdog.unwatch(watched);
        reject(error);
      },
    );
  });
}

function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/**
 * Runs one submitted task on its path's device: opens it, submits the request within the task's deadline,
 * retries UNIT ATTENTION, and turns every way it can end into the task's result. Resolves when the PATH is free
 * again, which may be after the result (a stuck device holds its path).
 */
export async function runTask(task: Task, deps: RunTaskDeps): Promise<void> {
  const { command } = task;
  const ctx = resultContext(deps.agentId, command, task.luId);
  const unitAttentions: Uint8Array[] = [];
  let startedAt: Date | undefined;
  try {
    // An open device is taken as it is: no promise to wait for on every command.
    const dev = deps.devices.opened(command.path) ?? (await deps.devices.open(command.path, task));
    if (task.abort?.signal.aborted === true) {
      deps.finish(task, refusedResult(command, ctx, 'cancelled before submission'));
      return;
    }
    for (let attempt = 0; ; attempt++) {
      const remaining = task.deadline - Date.now();
      if (remaining <= 0 && startedAt === undefined) {
        deps.finish(task, refusedResult(command, ctx, 'timed out before submission'));
        return;
      }
      // The device gets what is left of the command's time, never more than it asked for.
      const request = {
        ...task.request,
        timeoutMs: Math.max(1, Math.min(task.request.timeoutMs, remaining)),
      };
      task.state = 'submitted';
      startedAt ??= new Date();
      const grace = deps.watchdogGraceMs;
      const answer = await executeWithWatchdog(
        dev,
        request,
        task.abort?.signal,
        grace,
        deps.watchdog,
      );
      if ('stuck' in answer) {
        deps.finish(task, stuckResult(command, ctx, request, grace, startedAt));
        // One command per path: the next one waits until the device lets go of this one.
        await answer.stuck;
        return;
      }
      const { response } = answer;
      deps.onPathAnswer?.(command.path);
      const retriable = classifyResponse(response).kind === 'unit-attention';
      if (retriable && attempt < deps.unitAttentionRetries && task.deadline - Date.now() > 0) {
        // SPC-4 5.14: a command that reports a UNIT ATTENTION was not run; report the UA as news and retry.
        unitAttentions.push(response.sense);
        deps.log.info(
          { commandId: command.commandId, path: command.path, attempt: attempt + 1 },
          'unit attention consumed; retrying',
        );
        continue;
      }
      const { agentId, path, luId } = ctx;
      const options = { agentId, path, luId, request, unitAttentions, startedAt };
      deps.finish(task, buildCommandResult(command, response, options));
      return;
    }
  } catch (e) {
    await finishFailed(task, ctx, e, startedAt, deps);
  }
}

/** Answers a task whose run threw: an OS error (the device is dropped), a cancel, or a bug in the agent. */
async function finishFailed(
  task: Task,
  ctx: TaskContext,
  e: unknown,
  startedAt: Date | undefined,
  deps: RunTaskDeps,
): Promise<void> {
  const { command } = task;
  if (e instanceof TransportError) {
    await deps.devices.drop(command.path);
    deps.onPathError?.(command.path, e);
    deps.finish(task, transportErrorResult(command, ctx, e));
    return;
  }
  if (isAbortError(e)) {
    deps.finish(task, refusedResult(command, ctx, 'cancelled before submission'));
    return;
  }
  deps.log.error(
    { err: e, commandId: command.commandId, path: command.path },
    'command failed in the agent',
  );
  deps.finish(task, agentErrorResult(command, ctx, e, startedAt));
}
