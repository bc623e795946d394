#!/usr/bin/env node
/** prfleet-agent: wires config, logger, device source and SIGTERM; the agent itself is agent/agent.ts. */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { createLogger } from '../src/common/logger.js';
import { loadTracingConfig, type TracingOptions } from '../src/common/tracing-config.js';
import { createAgent, type DeviceSource } from './agent.js';
import { AGENT_COMMAND, commandLineOf } from './cli-options.js';
import { ConfigError, parseAgentConfig, type AgentConfig } from './config.js';
import type { CommandTracer } from './session.js';
import { createEmulatedSource, createSgioSource } from './sources.js';
import { AGENT_VERSION } from './version.js';

/** Builds the device source the config names: one host of an emulated fabric, or real SG_IO nodes. */
async function sourceOf(config: AgentConfig): Promise<DeviceSource> {
  if (config.transport === 'emulated') {
    // The emulator and the fabric parser load only for emulated agents (~40 ms of a real host agent's start-up).
    const { createEmulatedFabric, loadFabric } = await import('./fabric.js');
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

/** Longest wait for buffered spans at stop (systemd's TimeoutStopSec also covers the drain). */
const TRACE_FLUSH_MS = 2_000;

/** Sets up the tracer provider and the per-command span wrapper (loads the OpenTelemetry API and SDK). */
async function setUpTracing(options: TracingOptions, config: AgentConfig) {
  const [{ setupTracerProvider }, { getTracer, inCommandSpan, traceLogMixin }] = await Promise.all([
    import('../src/common/tracing.js'),
    import('../src/common/command-trace.js'),
  ]);
  const setup = setupTracerProvider({
    ...options,
    serviceVersion: AGENT_VERSION,
    instanceId: config.agentId,
  });
  const tracer = getTracer('prfleet-agent', AGENT_VERSION);
  const traceCommand: CommandTracer = (command, execute) =>
    inCommandSpan(tracer, command, config.agentId, execute);
  return {
    traceCommand,
    logMixin: traceLogMixin,
    async flush(log: Logger, limitMs: number): Promise<void> {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), limitMs);
      });
      const done = setup.shutdown().then(
        () => 'done' as const,
        (e: unknown) => {
          log.warn({ err: e }, 'trace export failed at stop: spans lost');
          return 'failed' as const;
        },
      );
      if ((await Promise.race([done, late])) === 'late')
        log.warn({ limitMs }, 'trace export not finished at stop: spans lost');
      clearTimeout(timer);
    },
  };
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = parseAgentConfig(commandLineOf(AGENT_COMMAND));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on: each command carrying a trace context runs in a span continuing
  // the caller's trace. The OpenTelemetry API and SDK load only then (~30 ms and more of a cold start).
  let tracingConfig: ReturnType<typeof loadTracingConfig>;
  try {
    tracingConfig = loadTracingConfig(process.env, 'prfleet-agent');
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  }
  const tracing =
    tracingConfig === undefined ? undefined : await setUpTracing(tracingConfig, config);
  const log = createLogger({
    name: 'prfleet-agent',
    level: config.logLevel,
    ...(tracing === undefined ? {} : { mixin: tracing.logMixin }),
  });
  log.info(
    { config: { ...config, tlsKey: config.tlsKey === undefined ? undefined : '(file)' } },
    'config',
  );

  const devices = await sourceOf(config);
  const source =
    config.record === undefined
      ? devices
      : // Loaded only when recording: the transcript module brings the emulator (replay), which an sgio agent
        // otherwise never loads.
        (await import('./record.js')).recordingSource(devices, {
          dir: config.record,
          maskKeys: config.recordMaskKeys,
          onError: (error, file) =>
            log.warn(
              { err: error, file },
              'cannot write the transcript; recording stops for that path',
            ),
        });
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
      link: config.link,
      linkFallbackAfter: config.linkFallbackAfter,
      longPollWaitMs: config.longPollWaitMs,
    },
    {
      log,
      source,
      traceCommand: tracing?.traceCommand,
    },
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void agent
      .stop()
      .then(
        () => 0,
        (e: unknown) => {
          log.error({ err: e }, 'stop failed');
          return 1;
        },
      )
      .then(async (code) => {
        // Spans still buffered go out, but a collector that is down must neither fail nor hold up the stop.
        if (tracing !== undefined) await tracing.flush(log, TRACE_FLUSH_MS);
        process.exit(code);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  await agent.start();
}

main().catch((e: unknown) => {
  process.stderr.write(`prfleet-agent: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
