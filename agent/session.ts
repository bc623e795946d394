import type { Logger } from 'pino';
import { durationToMs, describeCommand } from '../src/common/command.js';
import { refusedResult } from '../src/common/result.js';
import type { Command, ConnectRequest, Hello, Welcome } from '../src/gen/prfleet/v1/agent.js';
import type { CommandResult, Path } from '../src/gen/prfleet/v1/scsi.js';
import { AsyncQueue } from '../src/common/async-queue.js';
import type { Executor } from './executor.js';
import type { AgentLinkClient } from './long-poll.js';
import { delay } from '../src/common/delay.js';
import { systemClock, type Clock } from '../src/common/clock.js';

/** Why a session ended. Every end leads to a reconnect unless the agent is stopping. */
export type SessionEndReason =
  /** The server ended the stream (status OK). */
  | 'server-ended'
  /** The stream failed (UNAVAILABLE, CANCELLED, connection refused, …). */
  | 'error'
  /** The server sent Reconnect; in-flight commands were finished first. */
  | 'reconnect'
  /** The agent is stopping. */
  | 'stopped';

/** How a session ended. */
export interface SessionEnd {
  /** Why. */
  readonly reason: SessionEndReason;
  /** True when the server answered Hello with Welcome. */
  readonly welcomed: boolean;
  /** How long the stream lasted, ms. */
  readonly durationMs: number;
  /** The stream error, for reason 'error'. */
  readonly error?: unknown;
}

/** What a session needs from its agent. */
export interface SessionDeps {
  /** AgentService.Connect: the gRPC client on the agent's one channel, or the long-poll link (long-poll.ts). */
  readonly client: AgentLinkClient;
  /** Sent as the first message. */
  readonly hello: Hello;
  /** Runs commands; shared by every session of the agent (idempotency outlives a stream). */
  readonly executor: Executor;
  /** The current inventory, sent after Welcome. */
  inventory(): Promise<readonly Path[]>;
  /** Re-discovers devices (server Rescan). */
  rescan(): Promise<readonly Path[]>;
  /** Logger with the agent's fields. */
  readonly log: Logger;
  /** Heartbeat interval until Welcome sets one, ms. */
  readonly heartbeatMs: number;
  /** Longest wait for in-flight commands at Reconnect or stop, ms. */
  readonly drainMs: number;
  /** Longest wait for the server to end the stream after the agent half-closes it, ms. @default 2000 */
  readonly halfCloseGraceMs?: number;
  /** Runs each command in a span continuing the trace it carries (see {@link CommandTracer}). @default none */
  readonly traceCommand?: CommandTracer | undefined;
  /** Times the session (SessionEnd.durationMs). @default systemClock */
  readonly clock?: Clock;
  /** Called when Welcome arrives. */
  onWelcome?(welcome: Welcome): void;
}

/**
 * Runs `execute` (the executor running `command`) in a span continuing the trace the command carries; set by
 * prfleet-agent when tracing is configured (src/common/command-trace.ts `inCommandSpan`), so the OpenTelemetry
 * API is loaded only then.
 */
export type CommandTracer = (
  command: Command,
  execute: () => Promise<CommandResult>,
) => Promise<CommandResult>;

/** One Connect stream of one agent. */
export interface Session {
  /**
   * Runs the stream until it ends for any reason and says why; never rejects. Aborting `signal` drains: waits
   * (bounded) for in-flight commands, sends their results, half-closes and waits for the server to end.
   */
  run(signal: AbortSignal): Promise<SessionEnd>;
  /** Sends a fresh inventory (e.g. after a path failed); false when the stream is not open. */
  sendInventory(paths: readonly Path[]): boolean;
}

/**
 * Creates one session: Hello first; on Welcome the Inventory and heartbeats at the Welcome's interval; Command →
 * executor → Result; Cancel → executor.cancel; Rescan → new Inventory; Reconnect → finish in-flight, then end
 * (the agent reconnects). Commands that arrive while the session drains are refused ("agent draining").
 */
export function createSession(deps: SessionDeps): Session {
  let outbox: AsyncQueue<ConnectRequest> | undefined;
  let welcomed = false;

  const send = (message: ConnectRequest['message']): boolean => outbox?.push({ message }) ?? false;

  return {
    sendInventory(paths) {
      if (!welcomed) return false;
      return send({ $case: 'inventory', value: { paths: [...paths] } });
    },

    async run(signal) {
      const log = deps.log;
      const clock = deps.clock ?? systemClock;
      const started = clock.now();
      // Unbounded here: the server bounds the commands in flight to this agent (its agent queue capacity), and so the
      // results this outbox can hold; heartbeats and inventories are few.
      const queue = new AsyncQueue<ConnectRequest>(Infinity);
      outbox = queue;
      const call = new AbortController();
      let heartbeat: NodeJS.Timeout | undefined;
      let halfCloseTimer: NodeJS.Timeout | undefined;
      let ending: SessionEndReason | undefined;

      const beginEnd = async (reason: SessionEndReason): Promise<void> => {
        if (ending) return;
        ending = reason;
        const inFlight = deps.executor.inFlight;
        if (inFlight > 0) {
          log.info({ inFlight, reason }, 'finishing in-flight commands');
          await Promise.race([deps.executor.idle(), delay(deps.drainMs)]);
        }
        // Results already queued are written before the half-close (nice-grpc pipes the queue in order).
        flushResults();
        queue.close();
        halfCloseTimer = setTimeout(() => call.abort(), deps.halfCloseGraceMs ?? 2000);
      };
      const onStop = (): void => void beginEnd('stopped');
      if (signal.aborted) return { reason: 'stopped', welcomed: false, durationMs: 0 };
      signal.addEventListener('abort', onStop, { once: true });

      // Results that finish together (same tick) go out as one ResultBatch when the server accepts it: they are
      // gathered here and flushed, in order, on the next microtask (no timer, so no added latency).
      let resultBatches = false;
      let ready: { command: Command; result: CommandResult }[] = [];
      const flushResults = (): void => {
        const batch = ready;
        if (batch.length === 0) return;
        ready = [];
        const delivered =
          batch.length === 1
            ? send({ $case: 'result', value: (batch[0] as (typeof batch)[0]).result })
            : send({ $case: 'results', value: { results: batch.map((r) => r.result) } });
        if (!delivered) {
          for (const { command } of batch) {
            log.warn(
              { commandId: command.commandId, path: command.path },
              'result not delivered: the session ended (the server reports the command as UNKNOWN)',
            );
          }
        }
      };
      const sendResult = (command: Command, result: CommandResult): void => {
        if (!resultBatches) {
          ready.push({ command, result });
          flushResults();
          return;
        }
        if (ready.length === 0) queueMicrotask(flushResults);
        ready.push({ command, result });
      };
      const onCommand = (command: Command): void => {
        if (ending) {
          sendResult(
            command,
            refusedResult(
              command,
              { agentId: deps.hello.agentId },
              `agent ${ending === 'stopped' ? 'stopping' : 'reconnecting'}: not accepting commands`,
            ),
          );
          return;
        }
        if (log.isLevelEnabled('debug')) {
          log.debug(
            { commandId: command.commandId, path: command.path, command: describeCommand(command) },
            'command received',
          );
        }
        let executed: Promise<CommandResult>;
        try {
          executed =
            deps.traceCommand === undefined
              ? deps.executor.submit(command)
              : deps.traceCommand(command, () => deps.executor.submit(command));
        } catch (e) {
          executed = Promise.reject(e instanceof Error ? e : new Error(String(e)));
        }
        void executed.then(
          (result) => sendResult(command, result),
          (e: unknown) => {
            // A bug before submission (the executor answers everything else): the server still gets an answer.
            log.error({ err: e, commandId: command.commandId }, 'command failed before submission');
            sendResult(
              command,
              refusedResult(
                command,
                { agentId: deps.hello.agentId },
                `agent error before submission: ${e instanceof Error ? e.message : String(e)}`,
              ),
            );
          },
        );
      };

      // This session understands CommandBatch (handled below exactly like single commands).
      send({ $case: 'hello', value: { ...deps.hello, acceptsCommandBatches: true } });
      let end: SessionEnd;
      try {
        for await (const response of deps.client.connect(queue, { signal: call.signal })) {
          const message = response.message;
          switch (message?.$case) {
            case 'welcome': {
              welcomed = true;
              resultBatches = message.value.acceptsResultBatches;
              const interval =
                message.value.heartbeatInterval && durationToMs(message.value.heartbeatInterval) > 0
                  ? durationToMs(message.value.heartbeatInterval)
                  : deps.heartbeatMs;
              log.info(
                {
                  sessionId: message.value.sessionId,
                  serverInstance: message.value.serverInstance,
                  heartbeatMs: interval,
                },
                'connected',
              );
              clearInterval(heartbeat);
              heartbeat = setInterval(() => {
                send({
                  $case: 'heartbeat',
                  value: { sentAt: new Date(), inFlight: deps.executor.inFlight },
                });
              }, interval);
              heartbeat.unref();
              const paths = await deps.inventory();
              send({ $case: 'inventory', value: { paths: [...paths] } });
              deps.onWelcome?.(message.value);
              break;
            }
            case 'command':
              onCommand(message.value);
              break;
            case 'commands':
              // Only framing: each command is handled as if it had come alone, in order (per-path order kept).
              for (const command of message.value.commands) onCommand(command);
              break;
            case 'cancel': {
              const dropped = deps.executor.cancel(message.value.commandId);
              log.info({ commandId: message.value.commandId, dropped }, 'cancel received');
              break;
            }
            case 'rescan':
              log.info('rescan requested');
              void deps.rescan().then(
                (paths) => send({ $case: 'inventory', value: { paths: [...paths] } }),
                (e: unknown) => log.warn({ err: e }, 'rescan failed'),
              );
              break;
            case 'reconnect':
              log.info({ reason: message.value.reason }, 'server asked to reconnect');
              void beginEnd('reconnect');
              break;
            case undefined:
              break;
          }
        }
        end = { reason: ending ?? 'server-ended', welcomed, durationMs: clock.now() - started };
      } catch (e) {
        end = ending
          ? { reason: ending, welcomed, durationMs: clock.now() - started }
          : { reason: 'error', welcomed, durationMs: clock.now() - started, error: e };
      } finally {
        clearInterval(heartbeat);
        clearTimeout(halfCloseTimer);
        signal.removeEventListener('abort', onStop);
        flushResults();
        queue.close();
        welcomed = false;
        if (outbox === queue) outbox = undefined;
      }
      return end;
    },
  };
}
