#!/usr/bin/env node
/** prfleet-server: wires config, logger, store, listen and SIGTERM/SIGINT drain; everything else is in server.ts. */
import { createLogger } from '../common/logger.js';
import { loadConfig, loggableConfig, type ServerConfig } from './config.js';
import { StoreOpenError } from './durable.js';
import { createPrfleetServer, type PrfleetServer } from './server.js';

let config: ServerConfig;
try {
  config = loadConfig(process.env);
} catch (e) {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
const log = createLogger({ level: config.logLevel, name: 'prfleet-server' });
log.info({ config: loggableConfig(config) }, 'effective config');
if (config.store.kind === 'postgres' && process.env['PRFLEET_INSTANCE_ID'] === undefined) {
  log.warn(
    'PRFLEET_INSTANCE_ID is not set: after a crash, the idempotency keys this instance left pending become UNKNOWN only once stale (hours); give each instance a stable id to settle them at restart',
  );
}

let server: PrfleetServer;
try {
  server = await createPrfleetServer({ log, config });
} catch (e) {
  // A store that cannot open is an operator problem with a known fix: say it plainly, once, and exit.
  if (e instanceof StoreOpenError) {
    log.fatal({ err: e.cause }, e.message);
    process.stderr.write(`prfleet-server: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
const port = await server.listen(`${config.host}:${config.port}`);
log.info({ host: config.host, port, instanceId: config.instanceId }, 'listening');

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping');
  try {
    await server.drain(config.drainGraceMs);
    await server.shutdown(config.shutdownTimeoutMs);
    log.info('stopped');
    process.exitCode = 0;
  } catch (e) {
    log.error({ err: e }, 'shutdown failed');
    process.exitCode = 1;
  }
  // Whatever still holds the event loop (a client's idle connection) must not keep a stopped server alive.
  setTimeout(() => process.exit(), 500).unref();
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
