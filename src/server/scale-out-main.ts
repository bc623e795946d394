#!/usr/bin/env node
/**
 * prfleet-server with the multi-instance extras (Redis routing, shared inventory, stream rotation, metrics,
 * settling of dead instances' journal entries) until main.ts carries the same wiring. Plaintext only:
 * PrfleetServer.listen() takes no credentials yet, so TLS and tokens need the main.ts/server.ts wiring.
 */
import { createLogger } from '../common/logger.js';
import { loadConfig, loggableConfig, type ServerConfig } from './config.js';
import { StoreOpenError } from './durable.js';
import { createServerExtras, loadScaleOutConfig, type ScaleOutConfig } from './scale-out.js';
import { createPrfleetServer, type PrfleetServer } from './server.js';

let config: ServerConfig;
let scaleOut: ScaleOutConfig;
try {
  config = loadConfig(process.env);
  scaleOut = loadScaleOutConfig(process.env);
  if (scaleOut.security?.credentials.tls !== undefined) {
    throw new Error(
      'scale-out-main serves plaintext only (set PRFLEET_PLAINTEXT=true); TLS needs main.ts',
    );
  }
} catch (e) {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
const log = createLogger({ level: config.logLevel, name: 'prfleet-server' });
log.info(
  {
    config: loggableConfig(config),
    redis:
      scaleOut.redis.redisUrl === undefined ? 'off (single instance)' : scaleOut.redis.keyPrefix,
    maxStreamAgeMs: scaleOut.maxStreamAgeMs,
  },
  'effective config',
);
if (scaleOut.security !== undefined)
  log.warn('plaintext: PRFLEET_PLAINTEXT=true was asked for (no TLS, no agent certificates)');

const extras = createServerExtras(scaleOut, {
  log,
  instanceId: config.instanceId,
  resultSlackMs: config.resultSlackMs,
});
let server: PrfleetServer;
try {
  server = await createPrfleetServer({ log, config, createRouter: extras.createRouter });
} catch (e) {
  if (e instanceof StoreOpenError) {
    log.fatal({ err: e.cause }, e.message);
    process.stderr.write(`prfleet-server: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
const port = await server.listen(`${config.host}:${config.port}`);
await extras.start(server);
log.info({ host: config.host, port, instanceId: config.instanceId }, 'listening');

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping');
  try {
    await server.drain(config.drainGraceMs);
    await server.shutdown(config.shutdownTimeoutMs);
    await extras.close();
    log.info('stopped');
    process.exitCode = 0;
  } catch (e) {
    log.error({ err: e }, 'shutdown failed');
    process.exitCode = 1;
  }
  setTimeout(() => process.exit(), 500).unref();
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
