// A compromised agent's result times at the limits of their wire types, against a real server with a PostgreSQL
// journal and history, spoken over the long-poll link by hand (the wire bytes no agent library would encode).
// Found: a result whose started_at had 2^62 seconds (past the 8.64e12 s a JavaScript Date holds) decoded as an
// Invalid Date that nothing could encode again: the REGISTER that had run came back to its caller as INTERNAL
// "Error serializing response" (a server error, which the API documents as "nothing reached a device"), and the
// journal's JSON of the result threw. A start time outside Timestamp's range, or a duration no device takes, now
// settles the command as UNKNOWN like any result that cannot be a device's answer (agents/results.ts).
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { LinkDownload, LinkUpload, type Command } from '../../src/gen/prfleet/v1/agent.js';
import { CommandResult, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { pgStore } from '../helpers/pg-store.js';
import { startTestServer } from '../helpers/server.js';
import { evilHelloAndInventory } from '../server/fake-agent.js';

const LU = 'naa.5000e11100000001';
const TARGET = { agentId: 'evil', path: '/dev/sg0' };

async function post(base: string, path: string, body?: Uint8Array) {
  const response = await fetch(`${base}/agent/v1/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, data: new Uint8Array(await response.arrayBuffer()) };
}

/** A server with a PostgreSQL store and one hand-spoken long-poll agent; its session id. */
async function fleetWithLiar() {
  const started = await startTestServer({ deps: { store: await pgStore('advtime') } });
  const base = `http://${started.address}`;
  const [hello, inventory] = evilHelloAndInventory(LU);
  const connected = await post(
    base,
    'connect',
    LinkUpload.encode({ messages: [hello, inventory] }).finish(),
  );
  const welcome = LinkDownload.decode(connected.data).messages[0]?.message;
  if (welcome?.$case !== 'welcome') throw new Error('no welcome');
  await expect.poll(() => started.server.agents.get('evil')?.paths.length).toBe(1);
  return { ...started, base, session: welcome.value.sessionId };
}

async function nextCommand(base: string, session: string): Promise<Command> {
  for (let i = 0; i < 20; i++) {
    const polled = await post(base, `sessions/${session}/poll?wait=1000`);
    for (const m of LinkDownload.decode(polled.data).messages) {
      if (m.message?.$case === 'command') return m.message.value;
      if (m.message?.$case === 'commands' && m.message.value.commands[0] !== undefined)
        return m.message.value.commands[0];
    }
  }
  throw new Error('no command polled');
}

/** A LinkUpload of one GOOD result for `command` with `tail` (raw CommandResult fields) appended. */
function goodResultWith(command: Command, tail: Uint8Array): Uint8Array {
  const result = CommandResult.encode(
    CommandResult.fromPartial({
      commandId: command.commandId,
      outcome: Outcome.OUTCOME_GOOD,
      statusName: 'GOOD',
    }),
  ).finish();
  const request = new BinaryWriter().uint32((3 << 3) | 2).bytes(Buffer.concat([result, tail])); // .result
  return new BinaryWriter()
    .uint32((1 << 3) | 2)
    .bytes(request.finish())
    .finish(); // .messages
}

/** CommandResult field `field` (a Timestamp or Duration) holding `seconds` and `nanos`. */
function timeField(field: number, seconds: bigint, nanos = 0): Uint8Array {
  const inner = new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos).finish();
  return new BinaryWriter()
    .uint32((field << 3) | 2)
    .bytes(inner)
    .finish();
}

const STARTED_AT = 27;
const DURATION = 9;

describe('an agent’s result times at the limits of their types', () => {
  it.each([
    ['started_at 2^62 s (no Date holds it)', timeField(STARTED_AT, 2n ** 62n), /started_at/],
    ['started_at in year 20000', timeField(STARTED_AT, 569_000_000_000n), /started_at/],
    ['started_at before year 1', timeField(STARTED_AT, -62_200_000_000n), /started_at/],
    ['a negative duration', timeField(DURATION, -5n), /duration -5s/],
    ['a duration of 2^63-1 s', timeField(DURATION, 2n ** 63n - 1n), /duration/],
    ['a duration with 2e9 ns', timeField(DURATION, 0n, 2_000_000_000), /duration/],
  ])(
    'settle a PROUT answered with %s as UNKNOWN, journaled and in the history',
    async (_what, tail, why) => {
      const { client, base, session } = await fleetWithLiar();
      const options = { idempotencyKey: 'times-1' };
      const pending = client.register({ target: TARGET, newKey: 0xa1n, options });
      const command = await nextCommand(base, session);
      expect(
        (await post(base, `sessions/${session}/send`, goodResultWith(command, tail))).status,
      ).toBe(204);
      const { result } = await pending;
      expect(result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);
      expect(result?.message).toMatch(why);
      const { entries } = await client.listHistory({});
      expect(entries.map((e) => e.outcome)).toEqual([Outcome.OUTCOME_UNKNOWN]);
      expect(await client.verifyHistory({})).toMatchObject({ ok: true, checked: 1n });
    },
  );

  it('keep a start time from an agent whose clock is years off, within Timestamp’s range', async () => {
    const { client, base, session } = await fleetWithLiar();
    const pending = client.register({ target: TARGET, newKey: 0xa1n });
    const command = await nextCommand(base, session);
    // 9999-12-31: a clock far in the future is the agent's business, not a reason to doubt the device.
    await post(
      base,
      `sessions/${session}/send`,
      goodResultWith(command, timeField(STARTED_AT, 253_402_300_799n)),
    );
    const { result } = await pending;
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(result?.startedAt?.toISOString()).toBe('9999-12-31T23:59:59.000Z');
  });
});
