import { Option, type Command } from '@commander-js/extra-typings';
import { InvalidArgumentError } from 'commander';
import { CONFIG_SOURCES, parseLabels, type AgentConfig } from './config.js';

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n))
    throw new InvalidArgumentError(`${JSON.stringify(value)} is not an integer`);
  return n;
}

function labels(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  try {
    return parseLabels(value, { ...previous });
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function globs(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

const env = (key: keyof AgentConfig): string => CONFIG_SOURCES[key].env;

/** Adds the connection options shared by prfleet-agent and prfleet-sim (each overridable by its PRFLEET_* variable). */
export function addConnectionOptions<T extends Command>(program: T) {
  return program
    .addOption(
      new Option(
        '--server <host:port>',
        'server address (several: comma-separated; long-poll also takes http(s)://host:port/prefix)',
      ).env(env('server')),
    )
    .addOption(new Option('--plaintext', 'connect without TLS').env(env('plaintext')))
    .addOption(new Option('--tls-ca <file>', 'CA certificate (PEM) to trust').env(env('tlsCa')))
    .addOption(
      new Option('--tls-cert <file>', 'client certificate (PEM) for mTLS').env(env('tlsCert')),
    )
    .addOption(new Option('--tls-key <file>', 'client key (PEM) for mTLS').env(env('tlsKey')))
    .addOption(
      new Option('--heartbeat-ms <ms>', 'heartbeat interval until the server sets one')
        .env(env('heartbeatMs'))
        .argParser(integer),
    )
    .addOption(
      new Option('--rescan-ms <ms>', 're-discover devices this often (0: only on request)')
        .env(env('rescanMs'))
        .argParser(integer),
    )
    .addOption(
      new Option('--path-concurrency <n>', 'paths worked on at once')
        .env(env('pathConcurrency'))
        .argParser(integer),
    )
    .addOption(
      new Option('--latency-ms <ms>', 'emulated per-command latency')
        .env(env('latencyMs'))
        .argParser(integer),
    )
    .addOption(
      new Option('--drain-ms <ms>', 'longest wait for in-flight commands on stop')
        .env(env('drainMs'))
        .argParser(integer),
    )
    .addOption(
      new Option(
        '--link <kind>',
        'stream (gRPC) or long-poll (HTTP/1.1, through HTTP/1.1-only proxies)',
      )
        .choices(['stream', 'long-poll'] as const)
        .env(env('link')),
    )
    .addOption(
      new Option(
        '--link-fallback-after <n>',
        'switch from the stream to long-poll after n stream failures in a row before any Welcome (0: never)',
      )
        .env(env('linkFallbackAfter'))
        .argParser(integer),
    )
    .addOption(
      new Option('--long-poll-wait-ms <ms>', 'how long each long poll waits for commands')
        .env(env('longPollWaitMs'))
        .argParser(integer),
    )
    .addOption(
      new Option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent').env(
        env('logLevel'),
      ),
    );
}

/** Adds the options only prfleet-agent has. */
export function addAgentOptions<T extends Command>(program: T) {
  return program
    .addOption(
      new Option('--agent-id <id>', 'stable agent id (default: the host name)').env(env('agentId')),
    )
    .addOption(new Option('--site <site>', 'site of this host').env(env('site')))
    .addOption(
      new Option('--label <key=value>', 'label sent to the server (repeatable)')
        .env(env('labels'))
        .argParser(labels),
    )
    .addOption(
      new Option('--transport <kind>', 'sgio (real /dev/sgN) or emulated').env(env('transport')),
    )
    .addOption(new Option('--fabric <file>', 'emulated fabric (YAML or JSON)').env(env('fabric')))
    .addOption(
      new Option('--host <id>', 'host of the fabric to be (default: the agent id)').env(
        env('host'),
      ),
    )
    .addOption(
      new Option(
        '--allow <glob>',
        'device nodes the agent may touch (repeatable; default all discovered)',
      )
        .env(env('allow'))
        .argParser(globs),
    )
    .addOption(
      new Option('--include-disks', 'also discover disks (PDT 00h)').env(env('includeDisks')),
    )
    .addOption(
      new Option(
        '--record <dir>',
        'write the PR and identity commands run on each path to transcripts in <dir> (prfleet replay)',
      ).env(env('record')),
    )
    .addOption(
      new Option(
        '--record-mask-keys',
        'replace reservation keys in the transcripts by stand-ins',
      ).env(env('recordMaskKeys')),
    );
}

/**
 * Commander options → the raw config object for parseAgentConfig. Boolean flags set from the environment are
 * read as booleans ("0"/"false" mean false): commander would take any value as true.
 */
export function rawConfigOf(
  program: Command,
  opts: Record<string, unknown>,
): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(opts)) {
    if (value === undefined) continue;
    const source = CONFIG_SOURCES[key === 'label' ? 'labels' : (key as keyof AgentConfig)];
    if (typeof value === 'boolean' && source && program.getOptionValueSource(key) === 'env') {
      const text = process.env[source.env] ?? '';
      raw[key] = /^(1|true|yes|on)$/i.test(text)
        ? true
        : /^(0|false|no|off|)$/i.test(text)
          ? false
          : text;
      continue;
    }
    raw[key === 'label' ? 'labels' : key] = value;
  }
  return raw;
}
