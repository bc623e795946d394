import { describe, expect, it } from 'vitest';
import { AGENT_COMMAND, helpText, parseCommandLine } from '../../agent/cli-options.js';
import { ConfigError, parseAgentConfig } from '../../agent/config.js';

/** The agent's config from a command line and variables, as prfleet-agent reads it. */
function configOf(args: string[], env: NodeJS.ProcessEnv = {}) {
  const outcome = parseCommandLine(AGENT_COMMAND, args, env);
  if (outcome.kind !== 'run') throw new Error(`exited: ${outcome.text}`);
  return parseAgentConfig(outcome.raw);
}

describe('agent configuration', () => {
  it('reads PRFLEET_* variables with defaults', () => {
    const config = configOf([], {
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
    expect(() => configOf([], { PRFLEET_SERVER: 'nope' })).toThrow(ConfigError);
    expect(() => configOf([], { PRFLEET_SERVER: 'nope' })).toThrow(/--server \/ PRFLEET_SERVER/);
    expect(() => configOf([], { PRFLEET_SERVER: 'h:1', PRFLEET_HEARTBEAT_MS: 'soon' })).toThrow(
      /--heartbeat-ms \/ PRFLEET_HEARTBEAT_MS/,
    );
    expect(() => configOf(['--server', 'h:1', '--heartbeat-ms', '1.5'])).toThrow(
      /--heartbeat-ms \/ PRFLEET_HEARTBEAT_MS/,
    );
    expect(() => configOf(['--server', 'h:1', '--link', 'carrier-pigeon'])).toThrow(
      /"stream"\|"long-poll" → at --link \/ PRFLEET_LINK/,
    );
    expect(() => configOf([], { PRFLEET_SERVER: 'h:1', PRFLEET_TRANSPORT: 'emulated' })).toThrow(
      /needs a fabric file → at --fabric/,
    );
    expect(() => configOf(['--server', 'h:1'], { PRFLEET_PLAINTEXT: 'maybe' })).toThrow(
      /--plaintext \/ PRFLEET_PLAINTEXT/,
    );
  });

  it('lets flags override the environment', () => {
    const env = { PRFLEET_SERVER: 'env-host:1', PRFLEET_SITE: 'env-site', PRFLEET_PLAINTEXT: '0' };
    expect(configOf([], env)).toMatchObject({
      server: 'env-host:1',
      site: 'env-site',
      plaintext: false,
    });
    const fromFlags = configOf(
      [
        '--server',
        'flag-host:2',
        '--plaintext',
        '--label',
        'a=1',
        '--label',
        'b=2,c=3',
        '--allow',
        '/dev/sg3',
        '--allow=/dev/sg4,/dev/sg5',
        '--heartbeat-ms',
        '250',
      ],
      { ...env, PRFLEET_LABELS: 'ignored=1', PRFLEET_HEARTBEAT_MS: '9000' },
    );
    expect(fromFlags).toMatchObject({
      server: 'flag-host:2',
      site: 'env-site',
      plaintext: true,
      labels: { a: '1', b: '2', c: '3' },
      allow: ['/dev/sg3', '/dev/sg4', '/dev/sg5'],
      heartbeatMs: 250,
    });
  });

  it('refuses a malformed label on the command line', () => {
    expect(() => configOf(['--server', 'h:1', '--label', 'novalue'])).toThrow(/expected key=value/);
  });
});

describe('prfleet-agent command line', () => {
  it('prints help with every option, its value and its variable', () => {
    const outcome = parseCommandLine(AGENT_COMMAND, ['--help'], {});
    expect(outcome).toMatchObject({ kind: 'exit', code: 0 });
    const text = outcome.kind === 'exit' ? outcome.text : '';
    expect(text).toMatch(/^Usage: prfleet-agent \[options\]\n\nprfleet host agent: /);
    expect(text).toMatch(/\n {2}--plaintext +connect without TLS \(env: PRFLEET_PLAINTEXT\)\n/);
    expect(text).toMatch(/\n {2}-h, --help +display help for command\n$/);
    expect(Math.max(...text.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80);
    // Wrapped descriptions: every option's line, its help and its variable, once the wrapping is undone.
    const unwrapped = text.replace(/\n {3,}/g, ' ');
    expect(unwrapped).toContain(
      '  --server <host:port>       server address (several: comma-separated; long-poll also takes ' +
        'http(s)://host:port/prefix) (env: PRFLEET_SERVER)\n',
    );
    for (const option of AGENT_COMMAND.options)
      expect(unwrapped).toContain(`${option.help} (env: PRFLEET_`);
  });

  it('prints the version', () => {
    expect(parseCommandLine(AGENT_COMMAND, ['-V'], {})).toEqual({
      kind: 'exit',
      code: 0,
      text: `${AGENT_COMMAND.version}\n`,
    });
  });

  it.each([
    [['--nope'], /^error: unknown option '--nope'\n\nUsage: prfleet-agent/],
    [['--server'], /^error: option '--server <value>' argument missing\n\nUsage:/],
    [['stray'], /^error: too many arguments: 'stray' \(the command takes options only\)\n\nUsage:/],
    [['--plaintext=yes'], /^error: option '--plaintext' does not take an argument\n/],
  ])('refuses %j with the error and then the help', (args, text) => {
    const outcome = parseCommandLine(AGENT_COMMAND, args, {});
    expect(outcome).toMatchObject({ kind: 'exit', code: 1 });
    expect(outcome.kind === 'exit' ? outcome.text : '').toMatch(text);
    expect(outcome.kind === 'exit' ? outcome.text : '').toContain(helpText(AGENT_COMMAND));
  });
});
