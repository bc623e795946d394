import type { ServerInterceptingCall, ServerInterceptor } from '@grpc/grpc-js';
import { ServerError, Status } from 'nice-grpc-common';
import type { AgentServiceImplementation } from '../../gen/prfleet/v1/agent.js';
import type { RpcObserver } from '../middleware.js';
import {
  createSessionHandler,
  type AgentSessionHandler,
  type SessionHandlerDeps,
} from './session-handler.js';
import { CONNECT_PATH, ConnectCall, ConnectStream } from './stream.js';

/** Dependencies of {@link createAgentService}. */
export interface AgentServiceDeps extends SessionHandlerDeps {
  /** Counts each finished Connect stream by status (the metrics' RPC counter), as rpcMiddleware does for others. */
  readonly observe?: RpcObserver | undefined;
  /**
   * A stream that has not said Hello this long after it opened is ended (DEADLINE_EXCEEDED): an open stream
   * holds a connection and its memory, and before Hello nothing is known of its peer. @default 30000
   */
  readonly helloTimeoutMs?: number;
}

/**
 * AgentService served below nice-grpc: `interceptor` answers every Connect call on grpc-js's own call object
 * (put it first in the server's `interceptors`, so credential interceptors such as the mTLS peer identity run
 * before it); `implementation` is registered for AgentService only so that grpc-js routes and decodes Connect
 * (it is never reached while the interceptor is installed, and says so if it is). An idle agent is most of a
 * fleet: nice-grpc's per-call context, Node stream and async-generator chain cost each one ~10 KiB.
 */
export interface AgentService {
  readonly interceptor: ServerInterceptor;
  readonly implementation: AgentServiceImplementation;
  /** The session logic the stream uses, for the other link (HTTP/1.1 long polling, src/server/http/long-poll.ts). */
  readonly sessions: AgentSessionHandler;
}

/**
 * `interceptor` for every method but AgentService.Connect, which it passes untouched: an interceptor placed after
 * the agent service's that has nothing to do for the agents' stream (the deadline's) would otherwise keep its
 * call and listener layer per connected agent for the stream's life.
 */
export function exceptConnect(interceptor: ServerInterceptor): ServerInterceptor {
  return (method, call) =>
    method.path === CONNECT_PATH ? (call as ServerInterceptingCall) : interceptor(method, call);
}

/** AgentService.Connect for a grpc-js/nice-grpc server; see {@link AgentService}. */
export function createAgentService(deps: AgentServiceDeps): AgentService {
  const sessions = createSessionHandler(deps);
  const streamDeps = { ...deps, sessions, helloTimeoutMs: deps.helloTimeoutMs ?? 30_000 };
  return {
    sessions,
    // grpc-js composes interceptors through ServerInterceptingCallInterface; its type asks for the class.
    interceptor: (method, call) =>
      (method.path === CONNECT_PATH
        ? new ConnectCall(call, new ConnectStream(call, streamDeps))
        : call) as ServerInterceptingCall, // other methods pass untouched
    implementation: {
      async *connect() {
        throw new ServerError(
          Status.INTERNAL,
          'AgentService.Connect is answered by createAgentService().interceptor, which this server lacks',
        );
      },
    },
  };
}
