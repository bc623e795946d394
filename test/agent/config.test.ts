import { Command } from '@commander-js/extra-typings';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { addAgentOptions, addConnectionOptions, rawConfigOf } from '../../agent/cli-options.js';
import { ConfigError, loadConfig, parseAgentConfig } from '../../agent/config.js';

function parseFlags(argv: string[]) {
  const program = addAgentOptions(
    addConnectionOptions(new Command('prfleet-agent')),
  ).exitOverride();
  program.parse(argv, { from: 'user' });
  return parseAgentConfig(rawConfigOf(program, program.opts()));
}

describe('agent configuration', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('reads PRFLEET_* variables with defaults', () => {
    const config = loadConfig({
      PRFLEET_SERVER: '10.0.0.1:50051',
      PRFLEET_AGENT_ID: 'host-a',
      PRFLEET_LABELS: 'role=media,rack=r1',
      PRFLEET_ALLOW: '/dev/sg0, /dev/sg1',
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_HEARTBEAT_MS: '5000',
    });
    expect(config).toMatchObject({
      server: '10.0.0.1:50051',
      agentId: 'host-a',
      labels: { role: 'media', rack: 'r1' },
      allow: ['/dev/sg0', '/dev/sg1'],
      plaintext: true,
      heartbeatMs: 5000,
      transport: 'sgio',
      pathConcurrency: 4,
    });
  });

  it('names the variable and the flag of a bad value', () => {
    expect(() => loadConfig({ PRFLEET_SERVER: 'nope' })).toThrow(ConfigError);
    expect(() => loadConfig({ PRFLEET_SERVER: 'nope' })).toThrow(/--server \/ PRFLEET_SERVER/);
    expect(() => loadConfig({ PRFLEET_SERVER: 'h:1', PRFLEET_HEARTBEAT_MS: 'soon' })).toThrow(
      /PRFLEET_HEARTBEAT_MS/,
    );
    expect(() => loadConfig({ PRFLEET_SERVER: 'h:1', PRFLEET_TRANSPORT: 'emulated' })).toThrow(
      /needs a fabric file → at --fabric/,
    );
  });

  it('lets flags override the environment (commander Option.env)', () => {
    vi.stubEnv('PRFLEET_SERVER', 'env-host:1');
    vi.stubEnv('PRFLEET_SITE', 'env-site');
    vi.stubEnv('PRFLEET_PLAINTEXT', '0');
    const fromEnv = parseFlags([]);
    expect(fromEnv).toMatchObject({ server: 'env-host:1', site: 'env-site', plaintext: false });
    const fromFlags = parseFlags([
      '--server',
      'flag-host:2',
      '--plaintext',
      '--label',
      'a=1',
      '--label',
      'b=2',
      '--allow',
      '/dev/sg3',
    ]);
    expect(fromFlags).toMatchObject({
      server: 'flag-host:2',
      site: 'env-site',
      plaintext: true,
      labels: { a: '1', b: '2' },
      allow: ['/dev/sg3'],
    });
  });

  it('refuses a malformed label on the command line', () => {
    expect(() => parseFlags(['--server', 'h:1', '--label', 'novalue'])).toThrow(
      /expected key=value/,
    );
  });
});
