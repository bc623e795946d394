#!/usr/bin/env node
/** prfleet-agent: wires config, logger, device source and SIGTERM; the agent itself is agent/agent.ts. */
import { readFile } from 'node:fs/promises';
import { Command } from '@commander-js/extra-typings';
import { trace } from '@opentelemetry/api';
import { createLogger } from '../src/common/logger.js';
import { loadTracingConfig, traceLogMixin } from '../src/common/tracing-config.js';
import { createAgent, type DeviceSource } from './agent.js';
import { addAgentOptions, addConnectionOptions, rawConfigOf } from './cli-options.js';
import { ConfigError, parseAgentConfig, type AgentConfig } from './config.js';
import { createEmulatedFabric, loadFabric } from './fabric.js';
import { createEmulatedSource, createSgioSource } from './sources.js';
import { AGENT_VERSION } from './version.js';

/** Builds the device source the config names: one host of an emulated fabric, or real SG_IO nodes. */
async function sourceOf(config: AgentConfig): Promise<DeviceSource> {
  if (config.transport === 'emulated') {
    const fabric = createEmulatedFabric(await loadFabric(config.fabric ?? ''), {
      latencyMs: config.latencyMs,
    });
    return createEmulatedSource(fabric.host(config.host ?? config.agentId), {
      closeFabric: fabric,
    });
  }
  return createSgioSource({ includeDisks: config.includeDisks });
}

/** TLS material named by the config, read once at start. */
async function tlsOf(config: AgentConfig): Promise<{ ca?: Buffer; cert?: Buffer; key?: Buffer }> {
  const read = (file: string | undefined) => (file === undefined ? undefined : readFile(file));
  const [ca, cert, key] = await Promise.all([
    read(config.tlsCa),
    read(config.tlsCert),
    read(config.tlsKey),
  ]);
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

async function main(): Promise<void> {
  const program = addAgentOptions(addConnectionOptions(new Command('prfleet-agent')))
    .description(
      'prfleet host agent: dials out to the server and runs typed SCSI PR commands on local paths',
    )
    .version(AGENT_VERSION)
    .showHelpAfterError();
  program.parse();

  let config: AgentConfig;
  try {
    config = parseAgentConfig(rawConfigOf(program, program.opts()));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on: each command carrying a trace context runs in a span continuing
  // the caller's trace (the SDK loads only then).
  const tracingConfig = loadTracingConfig(process.env, 'prfleet-agent');
  const tracing =
    tracingConfig === undefined
      ? undefined
      : (await import('../src/common/tracing.js')).setupTracerProvider({
          ...tracingConfig,
          serviceVersion: AGENT_VERSION,
          instanceId: config.agentId,
        });
  const log = createLogger({
    name: 'prfleet-agent',
    level: config.logLevel,
    ...(tracing === undefined ? {} : { mixin: traceLogMixin }),
  });
  log.info(
    { config: { ...config, tlsKey: config.tlsKey === undefined ? undefined : '(file)' } },
    'config',
  );

  const source = await sourceOf(config);
  const agent = createAgent(
    {
      server: config.server,
      agentId: config.agentId,
      site: config.site,
      labels: config.labels,
      plaintext: config.plaintext,
      tls: await tlsOf(config),
      allow: config.allow,
      heartbeatMs: config.heartbeatMs,
      rescanMs: config.rescanMs,
      pathConcurrency: config.pathConcurrency,
      drainMs: config.drainMs,
    },
    {
      log,
      source,
      tracer: tracing === undefined ? undefined : trace.getTracer('prfleet-agent', AGENT_VERSION),
    },
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    agent
      .stop()
      .then(() => tracing?.shutdown())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          log.error({ err: e }, 'stop failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await agent.start();
}

main().catch((e: unknown) => {
  process.stderr.write(`prfleet-agent: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
