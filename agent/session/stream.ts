import { refusedResult } from '../../src/common/result.js';
import type {
  Command,
  ConnectRequest,
  ConnectResponse,
  Welcome,
} from '../../src/gen/prfleet/v1/agent.js';
import type { Path } from '../../src/gen/prfleet/v1/scsi.js';
import { AsyncQueue } from '../../src/common/async-queue.js';
import { systemClock, type Clock } from '../../src/common/clock.js';
import { delay } from '../../src/common/delay.js';
import type { SessionDeps, SessionEnd, SessionEndReason } from '../session.js';
import { runCommand, type CommandRunnerDeps } from './commands.js';
import { Heartbeat, heartbeatIntervalMs } from './heartbeat.js';
import { ResultBatcher } from './result-batcher.js';

/**
 * One Connect call of a session, from Hello to its end: the outbox the agent writes to, the receive loop that
 * dispatches what the server sends, and the drain that ends it (Reconnect, or the agent stopping).
 */
export class SessionStream {
  private readonly clock: Clock;
  private readonly started: number;
  // Unbounded here: the server bounds the commands in flight to this agent (its agent queue capacity), and so the
  // results this outbox can hold; heartbeats and inventories are few.
  private readonly outbox = new AsyncQueue<ConnectRequest>(Infinity);
  /** Aborts the call when the server does not end it within the grace after the agent half-closed. */
  private readonly call = new AbortController();
  private halfCloseTimer: NodeJS.Timeout | undefined;
  private readonly heartbeat: Heartbeat;
  private readonly results: ResultBatcher;
  private readonly commandDeps: CommandRunnerDeps;
  /** Why the session is ending, once it is: commands arriving then are refused. */
  private ending: SessionEndReason | undefined;
  /** True from the Welcome until the stream ends. */
  private welcomed = false;

  constructor(private readonly deps: SessionDeps) {
    this.clock = deps.clock ?? systemClock;
    this.started = this.clock.now();
    this.heartbeat = new Heartbeat(() => {
      this.send({
        $case: 'heartbeat',
        value: { sentAt: new Date(), inFlight: deps.executor.inFlight },
      });
    });
    this.results = new ResultBatcher((message) => this.send(message), deps.log);
    this.commandDeps = {
      agentId: deps.hello.agentId,
      executor: deps.executor,
      traceCommand: deps.traceCommand,
      log: deps.log,
    };
  }

  /** Queues a message for the server; false when the stream is closed. */
  send(message: ConnectRequest['message']): boolean {
    return this.outbox.push({ message });
  }

  /** Sends a fresh inventory; false before the Welcome or after the end. */
  sendInventory(paths: readonly Path[]): boolean {
    if (!this.welcomed) return false;
    return this.send({ $case: 'inventory', value: { paths: [...paths] } });
  }

  /** Runs the stream until it ends and says why; never rejects. Aborting `signal` drains, then ends. */
  async run(signal: AbortSignal): Promise<SessionEnd> {
    const onStop = (): void => void this.beginEnd('stopped');
    signal.addEventListener('abort', onStop, { once: true });
    // This session understands CommandBatch (handled exactly like single commands).
    this.send({ $case: 'hello', value: { ...this.deps.hello, acceptsCommandBatches: true } });
    try {
      await this.receive();
      return this.end(this.ending ?? 'server-ended');
    } catch (e) {
      return this.ending ? this.end(this.ending) : this.end('error', e);
    } finally {
      this.heartbeat.stop();
      clearTimeout(this.halfCloseTimer);
      signal.removeEventListener('abort', onStop);
      this.results.flush();
      this.outbox.close();
      this.welcomed = false;
    }
  }

  private end(reason: SessionEndReason, error?: unknown): SessionEnd {
    const durationMs = this.clock.now() - this.started;
    return reason === 'error'
      ? { reason, welcomed: this.welcomed, durationMs, error }
      : { reason, welcomed: this.welcomed, durationMs };
  }

  /** Reads the server's messages until the stream ends (or throws). */
  private async receive(): Promise<void> {
    for await (const response of this.deps.client.connect(this.outbox, {
      signal: this.call.signal,
    })) {
      const pending = this.dispatch(response.message);
      // Only the Welcome is waited for (it reads the inventory): nothing is handled before it is done.
      if (pending !== undefined) await pending;
    }
  }

  /** Handles one message from the server; returns a promise only for what must finish before the next one. */
  private dispatch(message: ConnectResponse['message']): Promise<void> | undefined {
    const log = this.deps.log;
    switch (message?.$case) {
      case 'welcome':
        return this.onWelcome(message.value);
      case 'command':
        this.onCommand(message.value);
        return undefined;
      case 'commands':
        // Only framing: each command is handled as if it had come alone, in order (per-path order kept).
        for (const command of message.value.commands) this.onCommand(command);
        return undefined;
      case 'cancel': {
        const dropped = this.deps.executor.cancel(message.value.commandId);
        log.info({ commandId: message.value.commandId, dropped }, 'cancel received');
        return undefined;
      }
      case 'rescan':
        log.info('rescan requested');
        void this.deps.rescan().then(
          (paths) => this.send({ $case: 'inventory', value: { paths: [...paths] } }),
          (e: unknown) => log.warn({ err: e }, 'rescan failed'),
        );
        return undefined;
      case 'reconnect':
        log.info({ reason: message.value.reason }, 'server asked to reconnect');
        void this.beginEnd('reconnect');
        return undefined;
      case undefined:
        return undefined;
    }
  }

  /** Welcome: result batching as the server accepts it, heartbeats at its interval, then the inventory. */
  private async onWelcome(welcome: Welcome): Promise<void> {
    this.welcomed = true;
    this.results.batches = welcome.acceptsResultBatches;
    const interval = heartbeatIntervalMs(welcome, this.deps.heartbeatMs);
    this.deps.log.info(
      {
        sessionId: welcome.sessionId,
        serverInstance: welcome.serverInstance,
        heartbeatMs: interval,
      },
      'connected',
    );
    this.heartbeat.start(interval);
    const paths = await this.deps.inventory();
    this.send({ $case: 'inventory', value: { paths: [...paths] } });
    this.deps.onWelcome?.(welcome);
  }

  private onCommand(command: Command): void {
    if (this.ending) {
      this.results.add(
        command,
        refusedResult(
          command,
          { agentId: this.deps.hello.agentId },
          `agent ${this.ending === 'stopped' ? 'stopping' : 'reconnecting'}: not accepting commands`,
        ),
      );
      return;
    }
    runCommand(command, this.commandDeps, (c, result) => this.results.add(c, result));
  }

  /**
   * Ends the session: waits (bounded) for in-flight commands, sends their results, half-closes, and gives the
   * server a grace period to end the stream before the call is aborted.
   */
  private async beginEnd(reason: SessionEndReason): Promise<void> {
    if (this.ending) return;
    this.ending = reason;
    const inFlight = this.deps.executor.inFlight;
    if (inFlight > 0) {
      this.deps.log.info({ inFlight, reason }, 'finishing in-flight commands');
      await Promise.race([this.deps.executor.idle(), delay(this.deps.drainMs)]);
    }
    // Results already queued are written before the half-close (nice-grpc pipes the queue in order).
    this.results.flush();
    this.outbox.close();
    this.halfCloseTimer = setTimeout(() => this.call.abort(), this.deps.halfCloseGraceMs ?? 2000);
  }
}
