// A compromised agent on the HTTP/1.1 long-poll link, against a real prfleet-server process (plaintext, memory
// store): it speaks the link by hand (no agent code) and answers commands with what a device could never send.
// The link must hand every message to the same checks as the gRPC stream (agents/results.ts): oversized sense
// and data-in settle the command as UNKNOWN (found: an outcome no agent reports, such as UNSPECIFIED, 99 or
// DRY_RUN, was accepted as the device's answer, and a PROUT's history then read UNSPECIFIED, neither applied nor
// UNKNOWN, so nothing would ever read the LU to settle it); results for commands not in flight, replays after UNKNOWN,
// malformed and oversized bodies and requests after close change nothing and leave the server serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import {
  LinkDownload,
  LinkUpload,
  type Command,
  type ConnectRequest,
  type ConnectResponse,
} from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome, type DeepPartial } from '../../src/gen/prfleet/v1/scsi.js';
import { MAX_SENSE_BYTES } from '../../src/server/agents/results.js';
import { ensureBuilt } from '../helpers/processes.js';
import { evilHelloAndInventory } from '../server/fake-agent.js';

const LU = 'naa.5000e11100000001';
const target = { agentId: 'evil', path: '/dev/sg0' };

/** One long-poll request; the answer's status, text and decoded messages. */
async function link(
  base: string,
  path: string,
  body: Uint8Array | undefined,
  contentType = 'application/x-protobuf',
): Promise<{ status: number; text: string; messages: ConnectResponse[] }> {
  const response = await fetch(`${base}/agent/v1/${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    ...(body === undefined ? {} : { body }),
  });
  const data = Buffer.from(await response.arrayBuffer());
  const ok = response.status === 200;
  return {
    status: response.status,
    text: ok ? '' : data.toString(),
    messages: ok ? LinkDownload.decode(data).messages : [],
  };
}

const upload = (messages: ConnectRequest[]) => LinkUpload.encode({ messages }).finish();

/** Polls until a command arrives (commands may come alone or in a batch). */
async function nextCommand(base: string, session: string): Promise<Command> {
  for (let i = 0; i < 50; i++) {
    const { status, messages } = await link(base, `sessions/${session}/poll?wait=2000`, undefined);
    expect(status).toBe(200);
    for (const m of messages) {
      if (m.message?.$case === 'command') return m.message.value;
      if (m.message?.$case === 'commands' && m.message.value.commands[0] !== undefined)
        return m.message.value.commands[0];
    }
  }
  throw new Error('no command polled');
}

describe('a compromised agent on the long-poll link', () => {
  let server: ServerProcess;
  let client: ControlClient;
  let base: string;
  let session: string;

  beforeAll(async () => {
    await ensureBuilt();
    // No observation: the test answers every command itself, and a read of the new LU would come first.
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory', PRFLEET_OBSERVE_INTERVAL_MS: '0' },
    });
    base = `http://${server.address}`;
    client = createControlClient(server.address);
    const [hello, inventory] = evilHelloAndInventory(LU);
    const welcomed = await link(base, 'connect', upload([hello, inventory]));
    expect(welcomed.status).toBe(200);
    const welcome = welcomed.messages[0]?.message;
    if (welcome?.$case !== 'welcome') throw new Error('no welcome');
    session = welcome.value.sessionId;
  }, 600_000);

  afterAll(async () => {
    client?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  /** Sends READ KEYS, answers it with `result` over the link, and returns what the client got. */
  async function answered(result: DeepPartial<CommandResult>) {
    const pending = client.readKeys({ target });
    const command = await nextCommand(base, session);
    const sent = await link(
      base,
      `sessions/${session}/send`,
      upload([
        {
          message: {
            $case: 'result',
            value: CommandResult.fromPartial({
              commandId: command.commandId,
              outcome: Outcome.OUTCOME_GOOD,
              status: 0,
              ...result,
            }),
          },
        },
      ]),
    );
    expect(sent.status).toBe(204);
    return { result: (await pending).result, command };
  }

  it('settles a result with sense over 252 bytes as UNKNOWN, keeping none of it', async () => {
    await expect
      .poll(async () => (await client.listAgents({})).agents.find((a) => a.agentId === 'evil'))
      .toMatchObject({ connected: true });
    const { result } = await answered({
      status: 2,
      sense: { raw: Buffer.alloc(MAX_SENSE_BYTES + 48, 0x70) },
    });
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/invalid result.*sense of 300 bytes/);
    expect(result?.sense?.raw.length ?? 0).toBe(0);
  });

  it('settles data-in over the allocation length as UNKNOWN', async () => {
    const { result } = await answered({ dataIn: Buffer.alloc(70_000) });
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.dataIn.length).toBe(0);
  });

  it.each([
    ['unspecified', Outcome.OUTCOME_UNSPECIFIED],
    ['not an outcome at all', 99],
    ['a dry run, which only the server answers', Outcome.OUTCOME_DRY_RUN],
  ])('settles a result whose outcome is %s as UNKNOWN', async (_what, outcome) => {
    const { result } = await answered({ outcome });
    expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
    expect(result?.message).toMatch(/invalid result.*outcome/);
  });

  it('drops results for commands not in flight and replays after UNKNOWN; the next command is served', async () => {
    const { command } = await answered({ sense: { raw: Buffer.alloc(400) } });
    const stray = (commandId: string) =>
      link(
        base,
        `sessions/${session}/send`,
        upload([
          {
            message: {
              $case: 'result',
              value: CommandResult.fromPartial({
                commandId,
                outcome: Outcome.OUTCOME_GOOD,
              }),
            },
          },
        ]),
      );
    expect((await stray(command.commandId)).status).toBe(204); // the replay: settled already
    expect((await stray('never-sent')).status).toBe(204);
    const { result } = await answered({});
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
  });

  it('refuses malformed, mistyped and oversized bodies without ending the session', async () => {
    const garbage = await link(
      base,
      `sessions/${session}/send`,
      Uint8Array.from([0xff, 0xff, 0xff]),
    );
    expect(garbage.status).toBe(400);
    expect(garbage.text).toMatch(/not a LinkUpload/);
    expect((await link(base, `sessions/${session}/send`, upload([]), 'text/plain')).status).toBe(
      415,
    );
    const giant = await link(base, `sessions/${session}/send`, new Uint8Array(5 * 1024 * 1024));
    expect(giant.status).toBe(413);
    expect((await link(base, `sessions/${session}/poll?wait=0`, undefined)).status).toBe(200);
  });

  it('answers 410 to every request after close, and the server still serves', async () => {
    expect((await link(base, `sessions/${session}/close`, undefined)).status).toBe(204);
    for (const what of ['poll?wait=0', 'send', 'close'])
      expect((await link(base, `sessions/${session}/${what}`, upload([]))).status).toBe(410);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await expect
      .poll(async () => (await client.listAgents({})).agents.find((a) => a.agentId === 'evil'))
      .toMatchObject({ connected: false });
  });
});
