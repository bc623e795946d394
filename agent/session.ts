import type { Logger } from 'pino';
import type { Command, Hello, Welcome } from '../src/gen/prfleet/v1/agent.js';
import type { CommandResult, Path } from '../src/gen/prfleet/v1/scsi.js';
import type { Clock } from '../src/common/clock.js';
import type { Executor } from './executor.js';
import type { AgentLinkClient } from './long-poll.js';
import { SessionStream } from './session/stream.js';

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
  /** The stream running now: sendInventory writes to it. */
  let active: SessionStream | undefined;
  return {
    sendInventory(paths) {
      return active?.sendInventory(paths) ?? false;
    },
    async run(signal) {
      if (signal.aborted) return { reason: 'stopped', welcomed: false, durationMs: 0 };
      const stream = new SessionStream(deps);
      active = stream;
      try {
        return await stream.run(signal);
      } finally {
        if (active === stream) active = undefined;
      }
    },
  };
}
