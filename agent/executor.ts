import { AsyncResource } from 'node:async_hooks';
import type { Logger } from 'pino';
import { DEFAULT_COMMAND_TIMEOUT_MS } from '../src/common/command.js';
import { refusedResult } from '../src/common/result.js';
import type { Command } from '../src/gen/prfleet/v1/agent.js';
import type { CommandResult } from '../src/gen/prfleet/v1/scsi.js';
import type { ScsiRequest } from '../src/scsi/index.js';
import type { ScsiTransport, TransportError } from './transport/transport.js';
import { CommandAdmission, type ExecutorPath } from './executor/admission.js';
import { logRefusal, logResult } from './executor/audit-log.js';
import { DeviceCache } from './executor/devices.js';
import { IdempotencyMemory } from './executor/idempotency.js';
import { InFlightCount } from './executor/in-flight.js';
import { PathQueues } from './executor/path-queues.js';
import { runTask, type RunTaskDeps } from './executor/run-task.js';
import { abortOf, resultContext, type Task } from './executor/task.js';
import { Watchdog } from './executor/watchdog.js';

export type { ExecutorPath } from './executor/admission.js';

/** Options for {@link createExecutor}. */
export interface ExecutorOptions {
  /** Agent id written into every result. */
  readonly agentId: string;
  /** How commands reach devices. */
  readonly transport: ScsiTransport;
  /** pino logger; every PROUT is logged at info with its outcome (the audit trail, style.md §6). */
  readonly log: Logger;
  /** Paths worked on at once. @default 4 */
  readonly pathConcurrency?: number;
  /** Commands accepted but unfinished, over all paths; more are refused. @default 1024 */
  readonly queueCapacity?: number;
  /** UNIT ATTENTIONs consumed and retried per command before the UA itself is the answer. @default 3 */
  readonly unitAttentionRetries?: number;
  /** PROUT idempotency keys remembered (least recently used forgotten first). @default 4096 */
  readonly idempotencyCapacity?: number;
  /** Device timeout when a command carries none. @default 60000 */
  readonly defaultTimeoutMs?: number;
  /**
   * Extra wait past the command timeout before the executor stops waiting for a device that never answers and
   * reports OUTCOME_TIMEOUT (SG_IO enforces the timeout itself; this guards a stuck ioctl). @default 5000
   */
  readonly watchdogGraceMs?: number;
  /** Called when a path fails with an OS error (e.g. the node vanished), so the agent can mark it offline. */
  readonly onPathError?: (path: string, error: TransportError) => void;
  /** Called when a device answered on a path (whatever it said), so a path marked offline comes back. */
  readonly onPathAnswer?: (path: string) => void;
  /**
   * Run each command in the async context it was submitted in (its trace span), not in that of the command that
   * happened to start its path's queue: log lines and spans then name the right command. Costs an AsyncResource
   * per command, so only when tracing. @default false
   */
  readonly keepCallerContext?: boolean;
}

/** Runs typed, allow-listed commands on known paths: one at a time per path, in arrival order. */
export interface Executor {
  /** Replaces the set of paths commands may use (the inventory after the allow-list). */
  setPaths(paths: Iterable<ExecutorPath>): void;
  /**
   * Accepts a command and resolves with its result, never rejects: refusals (unknown path, invalid command,
   * duplicate idempotency key, full queue, cancel before submission), OS errors and device answers are results.
   */
  submit(command: Command): Promise<CommandResult>;
  /** Drops a command not yet submitted to its device (its result is REFUSED); false when too late or unknown. */
  cancel(commandId: string): boolean;
  /** Commands accepted and not yet answered. */
  readonly inFlight: number;
  /** Resolves when nothing is in flight. */
  idle(): Promise<void>;
  /** Waits for in-flight commands, then closes every open device. */
  close(): Promise<void>;
}

/**
 * Creates the command executor. It builds CDBs only through `toScsiRequest` (no raw CDB exists), acts only on
 * paths given to setPaths, runs one command per path in arrival order with at most `pathConcurrency` paths busy,
 * retries UNIT ATTENTION (the command did not run) and lists the consumed UAs in the result, refuses a PROUT
 * whose idempotency key it already ran, and turns TransportError into OUTCOME_OS_ERROR.
 */
export function createExecutor(options: ExecutorOptions): Executor {
  return new PathExecutor(options);
}

/** The executor's parts put together: admission, then the path queues, then run-task; finish answers. */
class PathExecutor implements Executor {
  private readonly tasks = new Map<string, Task>();
  private readonly count = new InFlightCount();
  private readonly idempotency: IdempotencyMemory;
  private readonly devices: DeviceCache;
  private readonly admission: CommandAdmission;
  private readonly runDeps: RunTaskDeps;
  private readonly queues: PathQueues<Task>;

  constructor(private readonly options: ExecutorOptions) {
    this.idempotency = new IdempotencyMemory(options.idempotencyCapacity ?? 4096);
    this.devices = new DeviceCache(options.transport);
    this.admission = new CommandAdmission({
      queueCapacity: options.queueCapacity ?? 1024,
      defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      idempotency: this.idempotency,
      tasks: this.tasks,
      inFlight: () => this.count.value,
    });
    this.runDeps = {
      agentId: options.agentId,
      log: options.log,
      devices: this.devices,
      unitAttentionRetries: options.unitAttentionRetries ?? 3,
      watchdogGraceMs: options.watchdogGraceMs ?? 5000,
      watchdog: new Watchdog(),
      onPathError: options.onPathError,
      onPathAnswer: options.onPathAnswer,
      finish: (task, result) => this.finish(task, result),
    };
    this.queues = new PathQueues<Task>(options.pathConcurrency ?? 4, {
      run: (task) =>
        task.runInCallerContext === undefined
          ? runTask(task, this.runDeps)
          : task.runInCallerContext(),
      expire: (task) =>
        this.refuseQueued(
          task,
          `timed out before submission after ${Date.now() - task.receivedAt} ms in the queue`,
        ),
    });
  }

  get inFlight(): number {
    return this.count.value;
  }

  setPaths(list: Iterable<ExecutorPath>): void {
    this.admission.setPaths(list);
  }

  idle(): Promise<void> {
    return this.count.idle();
  }

  cancel(commandId: string): boolean {
    const task = this.tasks.get(commandId);
    if (!task || task.state !== 'queued') return false;
    abortOf(task).abort();
    this.refuseQueued(task, 'cancelled before submission');
    return true;
  }

  async close(): Promise<void> {
    if (this.count.value > 0) await this.idle();
    await this.devices.closeAll();
  }

  submit(command: Command): Promise<CommandResult> {
    this.count.add();
    const admitted = this.admission.check(command);
    if (admitted.refusal !== undefined)
      return this.refuse(command, admitted.refusal, admitted.luId);
    this.idempotency.begin(command);
    return this.enqueue(command, admitted.request, admitted.luId);
  }

  /** Answers a command refused at submission: it never became a task. */
  private refuse(command: Command, message: string, luId: string): Promise<CommandResult> {
    const context = resultContext(this.options.agentId, command, luId);
    const result = refusedResult(command, context, message);
    logRefusal(this.options.log, command, message);
    this.count.remove();
    return Promise.resolve(result);
  }

  /** Queues an admitted command on its path; resolves with its result. */
  private enqueue(command: Command, request: ScsiRequest, luId: string): Promise<CommandResult> {
    let resolve!: (r: CommandResult) => void;
    const promise = new Promise<CommandResult>((r) => (resolve = r));
    const now = Date.now();
    const task: Task = {
      command,
      request,
      luId,
      receivedAt: now,
      deadline: now + request.timeoutMs,
      abort: undefined,
      state: 'queued',
      resolve,
      runInCallerContext: undefined,
    };
    if (this.options.keepCallerContext === true)
      task.runInCallerContext = AsyncResource.bind(() => runTask(task, this.runDeps));
    this.tasks.set(command.commandId, task);
    this.queues.push(command.path, task);
    return promise;
  }

  /** Answers `task` once: settles its idempotency key, logs it, and frees its place in the count. */
  private finish(task: Task, result: CommandResult): void {
    if (task.state === 'done') return;
    task.state = 'done';
    this.tasks.delete(task.command.commandId);
    this.idempotency.settle(task.command, result.outcome);
    logResult(this.options.log, task.command, result, task.receivedAt);
    task.resolve(result);
    this.count.remove();
  }

  /** Answers a task that never reached its device (cancelled, or expired in the queue). */
  private refuseQueued(task: Task, message: string): void {
    const context = resultContext(this.options.agentId, task.command, task.luId);
    this.finish(task, refusedResult(task.command, context, message));
  }
}
