#!/usr/bin/env node
/** prfleet-sim: every host of an emulated fabric as an agent, in one process sharing ONE fabric. */
import { createLogger } from '../src/common/logger.js';
import { CONNECTION_OPTIONS, FABRIC_OPTION, commandLineOf } from './cli-options.js';
import { ConfigError, parseAgentConfig } from './config.js';
import { startEmulatedFleet } from './fleet.js';
import { AGENT_VERSION } from './version.js';

async function main(): Promise<void> {
  let config;
  let hosts: string | undefined;
  try {
    const { hosts: hostList, ...raw } = commandLineOf({
      name: 'prfleet-sim',
      description:
        'runs every host of an emulated fabric as a prfleet agent, all sharing one emulator',
      version: AGENT_VERSION,
      options: [
        ...CONNECTION_OPTIONS,
        FABRIC_OPTION,
        {
          key: 'hosts',
          kind: 'text',
          value: '<ids>',
          help: 'comma-separated hosts to run (default: all)',
          source: { flag: '--hosts', env: 'PRFLEET_SIM_HOSTS' },
        },
      ],
    });
    hosts = hostList as string | undefined;
    // The sim serves local demos: plaintext unless TLS files are given.
    config = parseAgentConfig({
      plaintext: raw['tlsCa'] === undefined && raw['tlsCert'] === undefined,
      ...raw,
      transport: 'emulated',
      agentId: 'prfleet-sim',
    });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  const log = createLogger({ name: 'prfleet-sim', level: config.logLevel });
  const abort = new AbortController();
  let stopping = false;
  let stopFleet: (() => Promise<void>) | undefined;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    abort.abort();
    void (stopFleet?.() ?? Promise.resolve()).then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  const fleet = await startEmulatedFleet({
    address: config.server,
    fabric: config.fabric ?? '',
    log,
    latencyMs: config.latencyMs,
    signal: abort.signal,
    ...(hosts === undefined
      ? {}
      : {
          hosts: hosts
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean),
        }),
    agentOptions: {
      plaintext: config.plaintext,
      heartbeatMs: config.heartbeatMs,
      rescanMs: config.rescanMs,
      pathConcurrency: config.pathConcurrency,
      drainMs: config.drainMs,
      link: config.link,
      linkFallbackAfter: config.linkFallbackAfter,
      longPollWaitMs: config.longPollWaitMs,
    },
  });
  stopFleet = () => fleet.stop();
  log.info(
    {
      server: config.server,
      agents: fleet.agents.map((a) => a.id),
      logicalUnits: fleet.fabric.emulator.logicalUnits().map((lu) => lu.id),
    },
    'ready',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`prfleet-sim: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
