// Numeric settings at their edges, for the server (a real prfleet-server process) and the agent. Found: the
// server coerced a variable's text with Number(), which reads blank text as 0, so
// - PRFLEET_PRINCIPAL_MAX_SESSIONS=" " (or _COMMANDS, _WATCHES) silently turned the fair share off (0 = unlimited),
// - PORT=" " listened on a random port, PRFLEET_DEADLINE_MARGIN_MS=" " left no margin,
// - PRFLEET_TAKEOVER_FAILED_AFTER_MS=" " (and "") counted a host failed after 0 ms of silence,
// - PRFLEET_TRACE_SAMPLE_RATIO="" sampled nothing; and "0x100" or "1e3" were taken as 256 and 1000.
// The agent read blank text the same way (PRFLEET_DRAIN_MS=" " drained for 0 ms). Now a numeric variable is a
// decimal number or empty (unset: its default, as for the store's variables); anything else stops the start with
// an error naming the variable.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { AGENT_COMMAND, parseCommandLine } from '../../agent/cli-options.js';
import { parseAgentConfig } from '../../agent/config.js';
import { loadTracingConfig } from '../../src/common/tracing-config.js';
import { loadSecurityConfig } from '../../src/server/auth/config.js';
import { loadMetricsConfig } from '../../src/server/metrics-config.js';
import { loadConfig } from '../../src/server/config.js';
import { builtBinaries, ensureBuilt } from '../helpers/processes.js';

const BASE = { PRFLEET_STORE: 'memory', PRFLEET_PLAINTEXT: 'true' };
const BAD_TEXTS = [' ', '\t', '0x100', '1e3', '12 ', '+-1'];
const VARIABLES = [
  'PORT',
  'PRFLEET_PRINCIPAL_MAX_SESSIONS',
  'PRFLEET_PRINCIPAL_MAX_COMMANDS',
  'PRFLEET_PRINCIPAL_MAX_WATCHES',
  'PRFLEET_DEADLINE_MARGIN_MS',
  'PRFLEET_TAKEOVER_FAILED_AFTER_MS',
];

describe('numeric server variables', () => {
  it.each(VARIABLES)('%s: text that is not a decimal integer is refused, naming it', (name) => {
    for (const text of BAD_TEXTS)
      expect(() => loadConfig({ ...BASE, [name]: text }), JSON.stringify(text)).toThrow(name);
  });

  it('PRFLEET_TLS_REVOKED_POLL_MS: the same', () => {
    for (const text of BAD_TEXTS)
      expect(() => loadSecurityConfig({ ...BASE, PRFLEET_TLS_REVOKED_POLL_MS: text })).toThrow(
        'PRFLEET_TLS_REVOKED_POLL_MS',
      );
  });

  it('PRFLEET_METRICS_PORT: hex and exponents are refused too', () => {
    for (const text of [' ', '0x1f90', '8e3'])
      expect(() => loadMetricsConfig({ PRFLEET_METRICS_PORT: text })).toThrow(
        'PRFLEET_METRICS_PORT',
      );
    expect(loadMetricsConfig({ PRFLEET_METRICS_PORT: '9464' })?.port).toBe(9464);
  });

  it('take their default when empty, and decimal text as written', () => {
    const config = loadConfig({
      ...BASE,
      PORT: '',
      PRFLEET_PRINCIPAL_MAX_SESSIONS: '',
      PRFLEET_TAKEOVER_FAILED_AFTER_MS: '',
      PRFLEET_DEADLINE_MARGIN_MS: '0',
      PRFLEET_PRINCIPAL_MAX_COMMANDS: '7',
    });
    expect(config.port).toBe(50_051);
    expect(config.principalLimits).toMatchObject({ maxSessions: 32, maxCommands: 7 });
    expect(config.takeoverRules?.failedAfterMs).toBe(300_000);
    expect(config.deadlineMarginMs).toBe(0);
  });

  it('PRFLEET_TRACE_SAMPLE_RATIO: empty is the default, blank text is refused', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    expect(loadTracingConfig({ ...endpoint, PRFLEET_TRACE_SAMPLE_RATIO: '' })?.sampleRatio).toBe(1);
    expect(loadTracingConfig({ ...endpoint, PRFLEET_TRACE_SAMPLE_RATIO: '.25' })?.sampleRatio).toBe(
      0.25,
    );
    for (const text of [' ', '0x1', '1e-1'])
      expect(() => loadTracingConfig({ ...endpoint, PRFLEET_TRACE_SAMPLE_RATIO: text })).toThrow(
        'PRFLEET_TRACE_SAMPLE_RATIO',
      );
  });

  it('a prfleet-server process given a blank fair share does not start, and says which variable', async () => {
    await ensureBuilt();
    const run = promisify(execFile)(process.execPath, [builtBinaries().server], {
      env: { ...BASE, PATH: process.env['PATH'], PORT: '0', PRFLEET_PRINCIPAL_MAX_SESSIONS: ' ' },
      timeout: 20_000,
    });
    const failure = (await run.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number; stderr?: string; stdout?: string } | undefined;
    expect(failure?.code).toBeGreaterThan(0);
    const said = `${failure?.stderr ?? ''}${failure?.stdout ?? ''}`;
    expect(said).toContain('PRFLEET_PRINCIPAL_MAX_SESSIONS');
    expect(said).toContain('expected a decimal integer');
    expect(said).not.toMatch(/\n\s+at /); // a start error, not a crash trace
  }, 180_000);
});

describe('numeric agent variables', () => {
  const configOf = (env: NodeJS.ProcessEnv) => {
    const outcome = parseCommandLine(AGENT_COMMAND, [], { PRFLEET_SERVER: 'h:1', ...env });
    if (outcome.kind !== 'run') throw new Error(outcome.text);
    return parseAgentConfig(outcome.raw);
  };

  it('refuse blank, hex and exponent text naming the variable; empty is the default', () => {
    for (const text of [' ', '0x10', '1e3'])
      expect(() => configOf({ PRFLEET_DRAIN_MS: text }), JSON.stringify(text)).toThrow(
        'PRFLEET_DRAIN_MS',
      );
    expect(configOf({ PRFLEET_DRAIN_MS: '' }).drainMs).toBe(10_000);
    expect(configOf({ PRFLEET_DRAIN_MS: '250' }).drainMs).toBe(250);
  });
});
