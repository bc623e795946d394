import { createServer, type Server } from 'nice-grpc';
import { onTestFinished } from 'vitest';
import { AsyncQueue } from '../../src/common/async-queue.js';
import { msToDuration } from '../../src/common/command.js';
import {
  AgentServiceDefinition,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
} from '../../src/gen/prfleet/v1/agent.js';

/** One agent stream as the minimal test server sees it. */
export interface FakeSession {
  readonly hello: Hello;
  readonly received: ConnectRequest[];
  readonly outbox: AsyncQueue<ConnectResponse>;
  /** Resolves when the agent's side of the stream ends (half-close or cancel). */
  readonly ended: Promise<void>;
  send(message: ConnectResponse['message']): void;
  /** Waits for the next received message matching `kind`, counting from `after` messages. */
  next<K extends NonNullable<ConnectRequest['message']>['$case']>(
    kind: K,
    after?: number,
  ): Promise<Extract<NonNullable<ConnectRequest['message']>, { $case: K }>['value']>;
}

/**
 * A minimal AgentService on 127.0.0.1:0 for agent tests: Welcome on Hello (heartbeat interval given), records
 * every message, lets the test send anything. The real server is H3's; this one has no routing or store.
 */
export async function startFakeAgentServer(
  options: { heartbeatMs?: number; acceptsResultBatches?: boolean } = {},
) {
  const sessions: FakeSession[] = [];
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  const server: Server = createServer();
  server.add(AgentServiceDefinition, {
    async *connect(requests) {
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.message?.$case !== 'hello')
        throw new Error('first message must be hello');
      const outbox = new AsyncQueue<ConnectResponse>(Infinity);
      const received: ConnectRequest[] = [];
      const ended = (async () => {
        try {
          for (;;) {
            const r = await it.next();
            if (r.done) return;
            received.push(r.value);
            wake();
          }
        } catch {
          // cancelled
        } finally {
          outbox.close();
          wake();
        }
      })();
      const session: FakeSession = {
        hello: first.value.message.value,
        received,
        outbox,
        ended,
        send: (message) => outbox.push({ message }),
        async next(kind, after = 0) {
          for (;;) {
            const found = received.slice(after).find((m) => m.message?.$case === kind);
            if (found) return found.message!.value as never;
            if (outbox.isClosed) throw new Error(`stream ended before a ${kind} arrived`);
            await new Promise<void>((resolve) => {
              const w = (): void => {
                waiters.delete(w);
                resolve();
              };
              waiters.add(w);
            });
          }
        },
      };
      sessions.push(session);
      session.send({
        $case: 'welcome',
        value: {
          sessionId: `s${sessions.length}`,
          serverInstance: 'fake',
          heartbeatInterval: msToDuration(options.heartbeatMs ?? 60_000),
          acceptsResultBatches: options.acceptsResultBatches ?? false,
        },
      });
      wake();
      yield* outbox;
    },
  });
  const port = await server.listen('127.0.0.1:0');
  onTestFinished(async () => {
    for (const s of sessions) s.outbox.close();
    await server.shutdown();
  });
  return {
    address: `127.0.0.1:${port}`,
    port,
    server,
    sessions,
    /** Waits until `count` sessions have opened. */
    async session(index: number): Promise<FakeSession> {
      while (sessions.length <= index) {
        await new Promise<void>((resolve) => {
          const w = (): void => {
            waiters.delete(w);
            resolve();
          };
          waiters.add(w);
        });
      }
      return sessions[index]!;
    },
  };
}
