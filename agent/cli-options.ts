/**
 * The command lines of prfleet-agent and prfleet-sim: node:util's parseArgs and a table of options, each
 * overridable by its PRFLEET_* variable. Not commander: it cost an idle agent ~0.5 MiB of RSS (its source, and the
 * child_process and dgram modules it loads; bench/README.md, "Agent weight, fourth pass").
 */
import { parseArgs } from 'node:util';
import { CONFIG_SOURCES, parseLabels, type AgentConfig } from './config.js';
import { AGENT_VERSION } from './version.js';

/**
 * How an option's text becomes its raw config value, the same from a flag and from the variable: `text` as is,
 * `integer` a number (zod rejects what is not one, naming flag and variable), `switch` true when given (from the
 * variable: 1/true/yes/on or 0/false/no/off), `labels` key=value pairs and `list` comma-separated items, both
 * repeatable and accumulated.
 */
export type CliOptionKind = 'text' | 'integer' | 'switch' | 'labels' | 'list';

/** One option of a command line. */
export interface CliOption {
  /** Key of the raw config (AgentConfig's field). */
  readonly key: string;
  readonly kind: CliOptionKind;
  /** Placeholder of the value in the help ('<host:port>'); switches have none. */
  readonly value?: string;
  readonly help: string;
  /** Flag and variable. @default CONFIG_SOURCES[key] */
  readonly source?: { readonly flag: string; readonly env: string };
}

/** A command: what its help says and the options it takes. */
export interface CliCommand {
  readonly name: string;
  readonly description: string;
  readonly version: string;
  readonly options: readonly CliOption[];
}

/** What a command line asks for: a config to run with, or text to print before exiting (help, version, error). */
export type CliOutcome =
  | { readonly kind: 'run'; readonly raw: Record<string, unknown> }
  | { readonly kind: 'exit'; readonly code: 0 | 1; readonly text: string };

/** The options shared by prfleet-agent and prfleet-sim. */
export const CONNECTION_OPTIONS: readonly CliOption[] = [
  {
    key: 'server',
    kind: 'text',
    value: '<host:port>',
    help: 'server address (several: comma-separated; long-poll also takes http(s)://host:port/prefix)',
  },
  { key: 'plaintext', kind: 'switch', help: 'connect without TLS' },
  { key: 'tlsCa', kind: 'text', value: '<file>', help: 'CA certificate (PEM) to trust' },
  { key: 'tlsCert', kind: 'text', value: '<file>', help: 'client certificate (PEM) for mTLS' },
  { key: 'tlsKey', kind: 'text', value: '<file>', help: 'client key (PEM) for mTLS' },
  {
    key: 'heartbeatMs',
    kind: 'integer',
    value: '<ms>',
    help: 'heartbeat interval until the server sets one',
  },
  {
    key: 'rescanMs',
    kind: 'integer',
    value: '<ms>',
    help: 're-discover devices this often (0: only on request)',
  },
  { key: 'pathConcurrency', kind: 'integer', value: '<n>', help: 'paths worked on at once' },
  { key: 'latencyMs', kind: 'integer', value: '<ms>', help: 'emulated per-command latency' },
  {
    key: 'drainMs',
    kind: 'integer',
    value: '<ms>',
    help: 'longest wait for in-flight commands on stop',
  },
  {
    key: 'link',
    kind: 'text',
    value: '<kind>',
    help: 'stream (gRPC) or long-poll (HTTP/1.1, through HTTP/1.1-only proxies)',
  },
  {
    key: 'linkFallbackAfter',
    kind: 'integer',
    value: '<n>',
    help: 'switch from the stream to long-poll after n stream failures in a row before any Welcome (0: never)',
  },
  {
    key: 'longPollWaitMs',
    kind: 'integer',
    value: '<ms>',
    help: 'how long each long poll waits for commands',
  },
  {
    key: 'logLevel',
    kind: 'text',
    value: '<level>',
    help: 'fatal|error|warn|info|debug|trace|silent',
  },
];

/** The emulated fabric's option (prfleet-agent and prfleet-sim). */
export const FABRIC_OPTION: CliOption = {
  key: 'fabric',
  kind: 'text',
  value: '<file>',
  help: 'emulated fabric (YAML or JSON)',
};

/** The options only prfleet-agent has. */
export const AGENT_OPTIONS: readonly CliOption[] = [
  {
    key: 'agentId',
    kind: 'text',
    value: '<id>',
    help: 'stable agent id (default: the host name)',
  },
  { key: 'site', kind: 'text', value: '<site>', help: 'site of this host' },
  {
    key: 'labels',
    kind: 'labels',
    value: '<key=value>',
    help: 'label sent to the server (repeatable)',
  },
  { key: 'transport', kind: 'text', value: '<kind>', help: 'sgio (real /dev/sgN) or emulated' },
  FABRIC_OPTION,
  {
    key: 'host',
    kind: 'text',
    value: '<id>',
    help: 'host of the fabric to be (default: the agent id)',
  },
  {
    key: 'allow',
    kind: 'list',
    value: '<glob>',
    help: 'device nodes the agent may touch (repeatable; default all discovered)',
  },
  { key: 'includeDisks', kind: 'switch', help: 'also discover disks (PDT 00h)' },
  {
    key: 'record',
    kind: 'text',
    value: '<dir>',
    help: 'write the PR and identity commands run on each path to transcripts in <dir> (prfleet replay)',
  },
  {
    key: 'recordMaskKeys',
    kind: 'switch',
    help: 'replace reservation keys in the transcripts by stand-ins',
  },
];

/** A switch's text: 1/true/yes/on and 0/false/no/off (or empty); other text is left for zod to reject. */
function envBool(value: string | undefined): boolean | string | undefined {
  if (value === undefined) return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off|)$/i.test(value)) return false;
  return value;
}

/**
 * A decimal integer's text as its number; other text (blank, `0x10`, `1e3`, which Number() reads as 0, 16 and
 * 1000) is left for zod to reject, naming flag and variable.
 */
function envNumber(value: string | undefined): number | string | undefined {
  if (value === undefined || value === '') return undefined;
  return /^-?\d+$/.test(value) ? Number(value) : value;
}

/** A comma-separated list; blanks dropped. */
const envList = (value: string | undefined): string[] | undefined =>
  value
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** prfleet-agent's command line. */
export const AGENT_COMMAND: CliCommand = {
  name: 'prfleet-agent',
  description:
    'prfleet host agent: dials out to the server and runs typed SCSI PR commands on local paths',
  version: AGENT_VERSION,
  options: [...CONNECTION_OPTIONS, ...AGENT_OPTIONS],
};

const sourceOf = (option: CliOption) =>
  option.source ?? CONFIG_SOURCES[option.key as keyof AgentConfig];

/** `text` in lines of at most `width` columns (words longer than that stand alone), each after `indent` spaces. */
function wrap(text: string, indent: number, width: number): string {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && indent + last.length + 1 + word.length <= width)
      lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines.join(`\n${' '.repeat(indent)}`);
}

/**
 * The help text, laid out as commander's: usage, description, one option a line with its variable, descriptions
 * wrapped to `width` columns.
 */
export function helpText(command: CliCommand, width = 80): string {
  const rows: [string, string][] = [
    ['-V, --version', 'output the version number'],
    ...command.options.map((o): [string, string] => {
      const { flag, env } = sourceOf(o);
      return [o.value === undefined ? flag : `${flag} ${o.value}`, `${o.help} (env: ${env})`];
    }),
    ['-h, --help', 'display help for command'],
  ];
  const column = Math.max(...rows.map(([left]) => left.length)) + 4;
  return [
    `Usage: ${command.name} [options]`,
    '',
    wrap(command.description, 0, width),
    '',
    'Options:',
    ...rows.map(([left, right]) => `  ${left.padEnd(column - 2)}${wrap(right, column, width)}`),
    '',
  ].join('\n');
}

/** One option's raw value from its flag's texts (parseArgs' values) or else its variable; undefined if neither. */
function rawValue(option: CliOption, given: unknown, envText: string | undefined): unknown {
  const texts = given === undefined ? undefined : ([given].flat() as (string | boolean)[]);
  switch (option.kind) {
    case 'text':
      return texts === undefined ? envText : texts.at(-1);
    case 'integer':
      return envNumber(texts === undefined ? envText : String(texts.at(-1)));
    case 'switch':
      return texts === undefined ? envBool(envText) : true;
    case 'labels':
      return texts === undefined
        ? envText === undefined
          ? undefined
          : parseLabels(envText)
        : texts.reduce<Record<string, string>>((all, t) => parseLabels(String(t), all), {});
    case 'list':
      return texts === undefined ? envList(envText) : texts.flatMap((t) => envList(String(t)));
  }
}

/** A parseArgs error as commander worded it (the flag in quotes, lower case). */
function errorText(error: Error & { code?: string }): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? '';
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `error: unknown option '${quoted}'`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `error: too many arguments: '${quoted}' (the command takes options only)`;
    default:
      return `error: ${error.message.charAt(0).toLowerCase()}${error.message.slice(1)}`;
  }
}

/**
 * Reads a command line: flags override the PRFLEET_* variables; --help and --version answer text. A bad value
 * (not an integer, a label without "=") is left to parseAgentConfig, which names flag and variable; a label
 * without "=" throws ConfigError here.
 */
export function parseCommandLine(
  command: CliCommand,
  args: readonly string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
): CliOutcome {
  const options = Object.fromEntries([
    ['help', { type: 'boolean', short: 'h' }],
    ['version', { type: 'boolean', short: 'V' }],
    ...command.options.map((o) => [
      sourceOf(o).flag.slice(2),
      {
        type: o.kind === 'switch' ? 'boolean' : 'string',
        multiple: o.kind === 'labels' || o.kind === 'list',
      },
    ]),
  ]) as Record<string, { type: 'boolean' | 'string'; multiple?: boolean; short?: string }>;
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: [...args], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return {
      kind: 'exit',
      code: 1,
      text: `${errorText(e as Error)}\n\n${helpText(command)}`,
    };
  }
  if (values['help'] === true) return { kind: 'exit', code: 0, text: helpText(command) };
  if (values['version'] === true) return { kind: 'exit', code: 0, text: `${command.version}\n` };
  const raw: Record<string, unknown> = {};
  for (const option of command.options) {
    const { flag, env: variable } = sourceOf(option);
    const value = rawValue(option, values[flag.slice(2)], env[variable]);
    if (value !== undefined) raw[option.key] = value;
  }
  return { kind: 'run', raw };
}

/** parseCommandLine for a process: prints help, version or error and exits, or returns the raw config. */
export function commandLineOf(command: CliCommand): Record<string, unknown> {
  const outcome = parseCommandLine(command);
  if (outcome.kind === 'run') return outcome.raw;
  (outcome.code === 0 ? process.stdout : process.stderr).write(outcome.text);
  process.exit(outcome.code);
}
