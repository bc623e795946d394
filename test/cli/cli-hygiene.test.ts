// What the CLI prints is plain, safe and consistent: usage errors for bad addresses, no escape codes in a pipe,
// no terminal escapes smuggled in by agents or devices, one error format, suggestions that are real commands,
// and an exit-code table in the docs that matches --help.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { EXIT_CODE_HELP, ExitCode } from '../../src/cli/exit-codes.js';
import { renderFindings } from '../../src/cli/fleet.js';
import { renderAgents, renderDevices, renderResult } from '../../src/cli/render.js';
import { Agent, LogicalUnit } from '../../src/gen/prfleet/v1/control.js';
import { Finding, FindingKind, Severity } from '../../src/gen/prfleet/v1/fleet.js';
import { CommandResult, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { suggest } from '../../src/server/fleet/suggest.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env,
  });
  return { code, stdout, stderr };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

// ESC, CSI (C1), BEL, CR: what a hostile hostname or vendor string would use to rewrite the terminal.
const ESCAPES = /[\u001b\u009b\u0007\r]/;

describe('--server', () => {
  it.each([
    ['127.0.0.1:abc', '"abc"'],
    ['127.0.0.1:99999', '"99999"'],
    ['localhost:0', '"0"'],
    ['[::1]:70000', '"70000"'],
    ['https://prfleet.example:8x443', '"8x443"'],
    ['host:', '""'],
  ])('refuses %s as a usage error (exit 1) before dialling', async (server, port) => {
    const run = await cli(['--server', server, 'agents']);
    expect(run.code).toBe(ExitCode.USAGE);
    expect(run.stderr).toContain(
      `prfleet: USAGE: --server ${server}: port ${port} is not a number from 1 to 65535`,
    );
    expect(run.stderr).toContain('\n→ ');
  });
});

describe('terminal output', () => {
  it('prints no escape codes for fleet tables, even for agent text full of them', () => {
    const out = renderFindings([
      Finding.fromPartial({
        kind: FindingKind.FINDING_KIND_UNKNOWN_KEY,
        severity: Severity.SEVERITY_CRITICAL,
        luId: 'naa.1',
        agentId: 'host\u001b]0;owned\u0007',
        message: 'key \u009b31m',
        suggestedAction: 'prfleet agents',
      }),
    ]);
    expect(out).not.toMatch(ESCAPES);
    expect(out).toContain('host\\u001b]0;owned\\u0007');
  });

  // The server now refuses control characters in a Hello and shows them as '.' in a device's INQUIRY text
  // (test/hostile/agent-hello.test.ts); the CLI still escapes what any server sends, so its tables are checked on
  // the rows themselves, and end to end on what this server lets through.
  it('shows device and agent text with control characters escaped in `agents` and `devices`', async () => {
    const agent = Agent.fromPartial({
      agentId: 'host-a',
      hostname: 'h\u001b]0;owned\u0007',
      site: 'dc1\u001b[2J',
      labels: { 'rack\u001b[1m': 'r1\r' },
      connected: true,
    });
    const unit = LogicalUnit.fromPartial({
      luId: 'naa.5000e11100000001',
      vendor: 'EVIL\u001b[31m',
      product: 'Loader\u009b2J',
      serial: 'SN\u0007',
      paths: [{ agentId: 'host-a', hostname: 'h\u0007', path: { path: '/dev/sg0\u001b[K' } }],
    });
    for (const out of [renderAgents([agent]), renderDevices([unit])]) {
      expect(out).not.toMatch(ESCAPES);
      expect(out).toContain('\\u001b[');
    }
    const { address } = await startTestServer();
    await connectFakeAgent(address, {
      agentId: 'host-a',
      site: 'dc1',
      paths: [
        fakePath('/dev/sg0', 'naa.5000e11100000001', {
          vendor: 'EVIL\u001b[31m',
          product: 'Loader\u009b2J',
          serial: 'SN\u0007',
        }),
      ],
    });
    for (const command of ['agents', 'devices']) {
      const run = await cli(['--plaintext', '--server', address, command], { NO_COLOR: '1' });
      expect(run.code).toBe(0);
      expect(run.stdout).not.toMatch(ESCAPES);
    }
    const json = await cli(['--plaintext', '--server', address, '-o', 'json', 'devices']);
    expect(json.stdout).not.toMatch(ESCAPES);
  });

  it('does not call a TIMEOUT result GOOD', () => {
    const out = renderResult(
      'RESERVE (EA)',
      CommandResult.fromPartial({
        outcome: Outcome.OUTCOME_TIMEOUT,
        status: 0,
        statusName: 'GOOD', // as agents before this fix sent it
        agentId: 'host-a',
        path: '/dev/sg1',
      }),
    );
    expect(out).not.toContain('GOOD');
    expect(out).toMatch(/status\s*│\s*none: TIMEOUT/);
  });
});

describe('error format', () => {
  it('prints usage errors the same way', async () => {
    const run = await cli(['reserve', 'host-a:/dev/sg3', '--key', 'zz', '--type', 'we']);
    expect(run.code).toBe(ExitCode.USAGE);
    expect(run.stderr).toMatch(/^prfleet: USAGE: option '--key <key>' argument 'zz' is invalid/);
    expect(run.stderr).toContain('\n→ run with --help for usage');
  });

  it('is the same `prfleet: STATUS … → hint` for device, fleet, history and token commands', async () => {
    const port = await closedPort();
    for (const command of [
      ['keys', 'host-a:/dev/sg3'],
      ['audit'],
      ['history', 'list'],
      ['tokens', 'list'],
    ]) {
      const run = await cli(['--server', `127.0.0.1:${port}`, ...command]);
      expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
      expect(run.stderr).toMatch(/^prfleet: UNAVAILABLE: .*\n→ cannot reach the prfleet server/);
    }
  });
});

describe('suggested actions', () => {
  const samples = [
    suggest.allocateKey('host-a', 'dc1', 'backup'),
    suggest.allocateKey('host-z', '', 'restore'),
    suggest.takeover({ key: 0xabn }, { lu: 'naa.1' }),
    suggest.takeover({ agent: 'host-c' }, { loader: 'loader1' }, 'host-a'),
    suggest.takeover({ agent: 'host-c' }, { loader: '' }),
    suggest.devicesOfLoader('loader1'),
    suggest.agents(),
    suggest.devices(),
    ...suggest.planAndApply('naa.1').split(', then '),
    suggest.setDesired(),
    suggest.register('host-a'),
    suggest.unregister('host-a', '/dev/sg0', 0x5ca1ab1en),
    suggest.unregister('', '', 0xabn),
    suggest.resetLu('naa.1'),
    suggest.resetLu('naa.1', 'host-a'),
  ];
  const PLACEHOLDER: Record<string, string> = {
    '<path>': '/dev/sg0',
    '<key>': '0x1',
    '<why>': 'because',
  };

  it.each(samples)('%s is a command the CLI parses', async (suggestion) => {
    expect(suggestion).toMatch(/^prfleet /);
    const words = suggestion
      .replace(/^prfleet /, '')
      .split(' ')
      .map((w) => w.replace(/<[a-z ]+>/g, (p) => PLACEHOLDER[p] ?? 'x'));
    // Parsed, then refused only by the server being away (not a usage error).
    const port = await closedPort();
    const run = await cli(['--server', `127.0.0.1:${port}`, ...words]);
    expect(run.stderr).not.toMatch(/USAGE/);
    expect(run.code).toBe(ExitCode.RPC_UNAVAILABLE);
  });
});

describe('docs/cli.md', () => {
  it('lists the same exit codes as --help', () => {
    const doc = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Exit codes'));
    const documented = [...section.matchAll(/^\| (\d+)/gm)].map((m) => Number(m[1]));
    const helped = [...EXIT_CODE_HELP.matchAll(/^ {1,3}(\d+)\+? /gm)].map((m) => Number(m[1]));
    expect(documented).toEqual(helped);
  });
});
