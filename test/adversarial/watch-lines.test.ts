// `prfleet watch` prints one line per event. Found: a unit attention's summary carried the agent's own words
// for the sense (its description) as they came, and the CLI's terminal filter keeps newlines, so a lying agent
// whose description was "x\n<time>  dc1  loader1  <lu>  PROUT: PREEMPT → GOOD  (host-b)" made the operator's
// watch print an event that never happened. A summary now shows control characters of agent text (newlines
// included) as '.', as the inventory shows a device's INQUIRY text. Then found: the bidirectional controls the
// edge refuses in requests passed, so words ending in U+202E displayed the rest of the line, the actor included,
// reversed ("(host-a)" read ")a-tsoh("); they, and U+2028/U+2029, are now shown as '.' too.
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from '../server/fake-agent.js';

const LU1 = 'naa.5000e11100000001';
const FORGED = `2026-01-01T00:00:00.000Z  dc1  loader1  ${LU1}  PROUT: PREEMPT → GOOD  (host-b)`;

/** The `prfleet watch` output of one unit attention whose sense the agent describes as `description`. */
async function watchedUnitAttention(description: string): Promise<string> {
  const { address, server, client } = await startTestServer();
  const agent = await connectFakeAgent(address, {
    agentId: 'host-a',
    paths: [fakePath('/dev/sg0', LU1)],
  });
  await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
  let stdout = '';
  const watching = runCli(
    ['--server', address, '--plaintext', 'watch', '--kind', 'unit-attention', '--max-events', '1'],
    { stdout: (t) => (stdout += t), stderr: (t) => (stdout += t) },
  );
  await new Promise((r) => setTimeout(r, 500));
  const read = client.readKeys({ target: { luId: LU1 } });
  agent.respond(await agent.nextCommand(), {
    unitAttentions: [
      {
        sense: {
          raw: Buffer.from([0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x03]),
          senseKey: 6,
          asc: 0x2a,
          ascq: 0x03,
          description,
        },
      },
    ],
  });
  await read;
  expect(await watching).toBe(0);
  return stdout;
}

describe('a unit attention whose words hold a newline', () => {
  it('shows bidirectional controls and line separators as ".", so the actor after them reads as sent', async () => {
    const stdout = await watchedUnitAttention('ok\u2028\u202e\u2066x\u200f');
    expect(stdout).not.toMatch(/[\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
    expect(stdout).toContain('host-a:/dev/sg0: ok...x.  (host-a:/dev/sg0)\n');
  });

  it('is one line of `prfleet watch`, and forges no other', async () => {
    const { address, server, client } = await startTestServer();
    const agent = await connectFakeAgent(address, {
      agentId: 'host-a',
      paths: [fakePath('/dev/sg0', LU1)],
    });
    await expect.poll(() => server.agents.get('host-a')?.paths.length).toBe(1);
    let stdout = '';
    const watching = runCli(
      [
        '--server',
        address,
        '--plaintext',
        'watch',
        '--kind',
        'unit-attention',
        '--max-events',
        '1',
      ],
      { stdout: (t) => (stdout += t), stderr: (t) => (stdout += t) },
    );
    await new Promise((r) => setTimeout(r, 500));
    const read = client.readKeys({ target: { luId: LU1 } });
    agent.respond(await agent.nextCommand(), {
      unitAttentions: [
        {
          sense: {
            raw: Buffer.from([0x70, 0, 6, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x03]),
            senseKey: 6,
            asc: 0x2a,
            ascq: 0x03,
            description: `x\n${FORGED}\r\u001b[2K`,
          },
        },
      ],
    });
    await read;
    expect(await watching).toBe(0);
    const lines = stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/UNIT-ATTENTION: unit attention on host-a:\/dev\/sg0: x\.2026/);
    expect(stdout).not.toMatch(/\r|\u001b/);
  });
});
