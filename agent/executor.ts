import { AsyncResource } from 'node:async_hooks';
import type { Logger } from 'pino';
import {
  CommandValidationError,
  describeCommand,
  proutActionWords,
  toScsiRequest,
  DEFAULT_COMMAND_TIMEOUT_MS,
} from '../src/common/command.js';
import {
  buildCommandResult,
  osErrorResult,
  refusedResult,
  unknownResult,
} from '../src/common/result.js';
import type { Command } from '../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, outcomeToJSON } from '../src/gen/prfleet/v1/scsi.js';
import {
  classifyResponse,
  formatKey,
  type ScsiRequest,
  type ScsiResponse,
} from '../src/scsi/index.js';
import { Semaphore } from '../src/common/semaphore.js';
import { TransportError, type ScsiDevice, type ScsiTransport } from './transport/transport.js';

/** A path the executor may act on, and the LU behind it (copied into results). */
export interface ExecutorPath {
  /** Device node, e.g. "/dev/sg3". */
  readonly path: string;
  /** Logical unit identity from discovery. */
  readonly luId: string;
}

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

/** What happened to an idempotency key: still running, or its recorded outcome. */
interface IdempotencyRecord {
  readonly commandId: string;
  outcome?: Outcome;
}

interface Task {
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
  /** run(task) bound to the submitter's async context ({@link ExecutorOptions.keepCallerContext}). */
  runInCallerContext: (() => Promise<void>) | undefined;
}

interface PathQueue {
  readonly tasks: Task[];
  running: boolean;
}

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

function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/**
 * Creates the command executor. It builds CDBs only through `toScsiRequest` (no raw CDB exists), acts only on
 * paths given to setPaths, runs one command per path in arrival order with at most `pathConcurrency` paths busy,
 * retries UNIT ATTENTION (the command did not run) and lists the consumed UAs in the result, refuses a PROUT
 * whose idempotency key it already ran, and turns TransportError into OUTCOME_OS_ERROR.
 */
export function createExecutor(options: ExecutorOptions): Executor {
  const log = options.log;
  const semaphore = new Semaphore(options.pathConcurrency ?? 4);
  const queueCapacity = options.queueCapacity ?? 1024;
  const uaRetries = options.unitAttentionRetries ?? 3;
  const idempotencyCapacity = options.idempotencyCapacity ?? 4096;
  const defaultTimeoutMs = options.defaultTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const watchdogGraceMs = options.watchdogGraceMs ?? 5000;

  let paths = new Map<string, ExecutorPath>();
  const queues = new Map<string, PathQueue>();
  const tasks = new Map<string, Task>();
  const devices = new Map<string, Promise<ScsiDevice>>();
  const idempotency = new Map<string, IdempotencyRecord>();
  let inFlight = 0;
  let idleWaiters: (() => void)[] = [];

  const context = (command: Command, luId = '') => ({
    agentId: options.agentId,
    path: command.path,
    luId,
  });

  function remember(key: string, record: IdempotencyRecord): void {
    idempotency.delete(key);
    idempotency.set(key, record);
    while (idempotency.size > idempotencyCapacity) {
      const oldest = idempotency.keys().next().value;
      if (oldest === undefined) break;
      idempotency.delete(oldest);
    }
  }

  function finish(task: Task, result: CommandResult): void {
    if (task.state === 'done') return;
    task.state = 'done';
    tasks.delete(task.command.commandId);
    const key = task.command.idempotencyKey;
    if (key !== '' && task.command.kind?.$case === 'prout') {
      const record = idempotency.get(key);
      if (record?.commandId === task.command.commandId) {
        // Nothing reached the device: the caller may try the same key again.
        if (
          result.outcome === Outcome.OUTCOME_REFUSED ||
          result.outcome === Outcome.OUTCOME_OS_ERROR
        ) {
          idempotency.delete(key);
        } else {
          record.outcome = result.outcome;
        }
      }
    }
    logResult(task, result);
    task.resolve(result);
    inFlight--;
    if (inFlight === 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  function logResult(task: Task, result: CommandResult): void {
    const command = task.command;
    // PRINs log at debug: skip building their fields (describeCommand, enum names) when nobody reads them.
    if (command.kind?.$case !== 'prout' && !log.isLevelEnabled('debug')) return;
    const fields = {
      commandId: command.commandId,
      path: command.path,
      command: describeCommand(command),
      outcome: outcomeToJSON(result.outcome),
      status: result.status,
      ms: Date.now() - task.receivedAt,
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

  /** The open device of `path`, opened (cancellable by `task`) on first use. */
  function device(path: string, task: Task): Promise<ScsiDevice> {
    let opened = devices.get(path);
    if (!opened) {
      opened = options.transport.open(path, {
        signal: (task.abort ??= new AbortController()).signal,
      });
      devices.set(path, opened);
      // A failed open is not cached: the next command tries again.
      opened.catch(() => {
        if (devices.get(path) === opened) devices.delete(path);
      });
    }
    return opened;
  }

  async function dropDevice(path: string): Promise<void> {
    const opened = devices.get(path);
    devices.delete(path);
    if (opened) await opened.then((d) => d.close()).catch(() => undefined);
  }

  /** Runs the request, waiting at most timeout + grace for a device that never answers. */
  async function executeWithWatchdog(
    dev: ScsiDevice,
    request: ScsiRequest,
    signal: AbortSignal | undefined,
  ): Promise<{ response: ScsiResponse } | { stuck: Promise<unknown> }> {
    const running = dev.execute(request, signal === undefined ? {} : { signal });
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<'stuck'>((resolve) => {
      timer = setTimeout(() => resolve('stuck'), request.timeoutMs + watchdogGraceMs);
    });
    try {
      const first = await Promise.race([running, watchdog]);
      if (first === 'stuck') return { stuck: running.catch(() => undefined) };
      return { response: first };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs one submitted task; resolves when the PATH is free again (which may be after the result). */
  async function run(task: Task): Promise<void> {
    const { command } = task;
    const ctx = context(command, task.luId);
    const unitAttentions: Uint8Array[] = [];
    let startedAt: Date | undefined;
    try {
      const dev = await device(command.path, task);
      if (task.abort?.signal.aborted === true) {
        finish(task, refusedResult(command, ctx, 'cancelled before submission'));
        return;
      }
      for (let attempt = 0; ; attempt++) {
        const remaining = task.deadline - Date.now();
        if (remaining <= 0 && startedAt === undefined) {
          finish(task, refusedResult(command, ctx, 'timed out before submission'));
          return;
        }
        const request = {
          ...task.request,
          timeoutMs: Math.max(1, Math.min(task.request.timeoutMs, remaining)),
        };
        task.state = 'submitted';
        startedAt ??= new Date();
        const answer = await executeWithWatchdog(dev, request, task.abort?.signal);
        if ('stuck' in answer) {
          finish(
            task,
            CommandResult.fromPartial({
              commandId: command.commandId,
              agentId: options.agentId,
              path: command.path,
              luId: task.luId,
              idempotencyKey: command.idempotencyKey,
              outcome: Outcome.OUTCOME_TIMEOUT,
              cdb: Buffer.from(request.cdb),
              dataOut: Buffer.from(request.dataOut ?? new Uint8Array(0)),
              message: `no answer from the device within ${request.timeoutMs + watchdogGraceMs} ms; the command may still complete`,
              startedAt,
            }),
          );
          // One command per path: the next one waits until the device lets go of this one.
          await answer.stuck;
          return;
        }
        const { response } = answer;
        options.onPathAnswer?.(command.path);
        const retriable = classifyResponse(response).kind === 'unit-attention';
        if (retriable && attempt < uaRetries && task.deadline - Date.now() > 0) {
          // SPC-4 5.14: a command that reports a UNIT ATTENTION was not run; report the UA as news and retry.
          unitAttentions.push(response.sense);
          log.info(
            { commandId: command.commandId, path: command.path, attempt: attempt + 1 },
            'unit attention consumed; retrying',
          );
          continue;
        }
        finish(
          task,
          buildCommandResult(command, response, {
            agentId: ctx.agentId,
            path: ctx.path,
            luId: ctx.luId,
            request,
            unitAttentions,
            startedAt,
          }),
        );
        return;
      }
    } catch (e) {
      if (e instanceof TransportError) {
        await dropDevice(command.path);
        options.onPathError?.(command.path, e);
        finish(
          task,
          osErrorResult(
            command,
            ctx,
            e.errno,
            `${e.code} on ${e.path}: ${explainErrno(e.code)} (${e.message})`,
          ),
        );
        return;
      }
      if (isAbortError(e)) {
        finish(task, refusedResult(command, ctx, 'cancelled before submission'));
        return;
      }
      log.error(
        { err: e, commandId: command.commandId, path: command.path },
        'command failed in the agent',
      );
      // The device may or may not have seen it: say so rather than guess.
      finish(task, {
        ...unknownResult(command, options.agentId, `agent error: ${(e as Error).message}`),
        ...ctx,
        ...(startedAt === undefined ? {} : { startedAt }),
      });
    }
  }

  async function drain(path: string, queue: PathQueue): Promise<void> {
    queue.running = true;
    try {
      for (;;) {
        const task = queue.tasks.shift();
        if (!task) return;
        if (task.state !== 'queued') continue; // cancelled while queued
        await semaphore.acquire();
        try {
          if (task.state !== 'queued') continue;
          if (Date.now() >= task.deadline) {
            finish(
              task,
              refusedResult(
                task.command,
                context(task.command, task.luId),
                `timed out before submission after ${Date.now() - task.receivedAt} ms in the queue`,
              ),
            );
            continue;
          }
          await (task.runInCallerContext === undefined ? run(task) : task.runInCallerContext());
        } finally {
          semaphore.release();
        }
      }
    } finally {
      queue.running = false;
      if (queue.tasks.length === 0) queues.delete(path);
    }
  }

  return {
    setPaths(list) {
      paths = new Map([...list].map((p) => [p.path, p]));
    },
    get inFlight() {
      return inFlight;
    },
    idle() {
      if (inFlight === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
    cancel(commandId) {
      const task = tasks.get(commandId);
      if (!task || task.state !== 'queued') return false;
      (task.abort ??= new AbortController()).abort();
      finish(
        task,
        refusedResult(
          task.command,
          context(task.command, task.luId),
          'cancelled before submission',
        ),
      );
      return true;
    },
    async close() {
      if (inFlight > 0) await this.idle();
      await Promise.all([...devices.keys()].map((p) => dropDevice(p)));
    },
    submit(command) {
      inFlight++;
      let resolve!: (r: CommandResult) => void;
      const promise = new Promise<CommandResult>((r) => (resolve = r));
      const refuse = (message: string, luId = ''): Promise<CommandResult> => {
        const result = refusedResult(command, context(command, luId), message);
        log.info(
          {
            commandId: command.commandId,
            path: command.path,
            command: describeCommand(command),
            message,
          },
          'command refused',
        );
        inFlight--;
        if (inFlight === 0) for (const w of idleWaiters.splice(0)) w();
        return Promise.resolve(result);
      };

      const target = paths.get(command.path);
      if (!target)
        return refuse(`path ${JSON.stringify(command.path)} is not in this agent's inventory`);
      if (tasks.has(command.commandId))
        return refuse(`command id ${command.commandId} is already in flight`, target.luId);
      let request: ScsiRequest;
      try {
        request = toScsiRequest(command, { timeoutMs: defaultTimeoutMs });
      } catch (e) {
        if (e instanceof CommandValidationError)
          return refuse(`invalid command: ${e.field}: ${e.message}`, target.luId);
        throw e;
      }
      const key = command.idempotencyKey;
      if (key !== '' && command.kind?.$case === 'prout') {
        const seen = idempotency.get(key);
        if (seen) {
          return refuse(
            seen.outcome === undefined
              ? `duplicate idempotency key ${JSON.stringify(key)}: already running as command ${seen.commandId}`
              : `duplicate idempotency key ${JSON.stringify(key)}: already ran as command ${seen.commandId} with outcome ${outcomeToJSON(seen.outcome)}`,
            target.luId,
          );
        }
      }
      if (inFlight > queueCapacity)
        return refuse(`agent queue full (${queueCapacity} commands)`, target.luId);
      if (key !== '' && command.kind?.$case === 'prout')
        remember(key, { commandId: command.commandId });

      const now = Date.now();
      const task: Task = {
        command,
        request,
        luId: target.luId,
        receivedAt: now,
        deadline: now + request.timeoutMs,
        abort: undefined,
        state: 'queued',
        resolve,
        runInCallerContext: undefined,
      };
      if (options.keepCallerContext === true)
        task.runInCallerContext = AsyncResource.bind(() => run(task));
      tasks.set(command.commandId, task);
      let queue = queues.get(command.path);
      if (!queue) {
        queue = { tasks: [], running: false };
        queues.set(command.path, queue);
      }
      queue.tasks.push(task);
      if (!queue.running) void drain(command.path, queue);
      return promise;
    },
  };
}
