import { onTestFinished } from 'vitest';
import { createLogger, type Logger } from '../../src/common/logger.js';
import {
  createControlClient,
  type ControlClient,
  type ClientOptions,
} from '../../src/common/client.js';
import { defaultServerConfig, type ServerConfig } from '../../src/server/config.js';
import {
  createPrfleetServer,
  type PrfleetServer,
  type ServerDeps,
} from '../../src/server/server.js';

/** Options for {@link startTestServer}. */
export interface TestServerOptions {
  /**
   * Config overrides on top of defaultServerConfig() (instanceId 'test', store memory: pass `store` here, or an
   * open store in `deps.store`, to test with a database). @default {}
   */
  readonly config?: Partial<ServerConfig>;
  /** Logger. @default silent unless PRFLEET_TEST_LOG=debug|info|… */
  readonly log?: Logger;
  /** Journal, router factory, … passed to createPrfleetServer. @default none */
  readonly deps?: Omit<ServerDeps, 'log' | 'config'>;
  /** Options for the ControlService client. @default {} */
  readonly client?: ClientOptions;
  /** Keep running after the test (caller shuts down). @default false */
  readonly keepAlive?: boolean;
}

/** A running in-process server with a real client over loopback. */
export interface TestServer {
  /** 'host:port' to dial. */
  readonly address: string;
  /** Bound port. */
  readonly port: number;
  /** The server. */
  readonly server: PrfleetServer;
  /** A ControlService client (nice-grpc, error details, deadline). */
  readonly client: ControlClient;
  /** Shuts down client and server (idempotent; also runs when the test finishes). */
  close(): Promise<void>;
}

/**
 * Starts a real prfleet server on 127.0.0.1:0 with a real ControlService client. Both are closed when the
 * current test finishes (call it inside a test, or pass keepAlive and close() yourself in afterAll).
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const level = process.env['PRFLEET_TEST_LOG'];
  const log =
    options.log ??
    createLogger({ level: (level as 'debug' | undefined) ?? 'silent', name: 'test-server' });
  const config: ServerConfig = {
    ...defaultServerConfig(),
    instanceId: 'test',
    shutdownTimeoutMs: 2_000,
    drainGraceMs: 1_000,
    ...options.config,
  };
  const server = await createPrfleetServer({ ...options.deps, log, config });
  const port = await server.listen('127.0.0.1:0');
  const address = `127.0.0.1:${port}`;
  const client = createControlClient(address, options.client);
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      client.close();
      await server.shutdown();
    })());
  if (options.keepAlive !== true) onTestFinished(close);
  return { address, port, server, client, close };
}
