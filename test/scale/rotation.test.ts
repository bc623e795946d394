import { describe, expect, it, onTestFinished } from 'vitest';
import type { ControlClient } from '../../src/common/client.js';
import { Outcome, outcomeToJSON } from '../../src/gen/prfleet/v1/scsi.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { ManualClock } from '../helpers/clock.js';
import { startTestServer } from '../helpers/server.js';

/** host-a, host-b and host-c each reach loader1's drive: one LU, three initiators, one PRgeneration. */
const DRIVE_PATHS = [
  { agentId: 'host-a', path: '/dev/sg2' },
  { agentId: 'host-b', path: '/dev/sg1' },
  { agentId: 'host-c', path: '/dev/sg1' },
] as const;

async function generationOf(client: ControlClient): Promise<number> {
  const { result } = await client.readKeys({ target: DRIVE_PATHS[0] });
  if (result?.data?.$case !== 'readKeys')
    throw new Error(`READ KEYS answered ${JSON.stringify(result)}`);
  return result.data.value.generation;
}

describe('stream rotation (maximum stream age)', () => {
  it('rotates every agent stream past its maximum age while commands run, none lost or repeated', async () => {
    // The server's clock is manual: streams age, and rotation's checks run, only when the test moves time, so
    // each round rotates every stream once, whatever the machine's speed.
    const clock = new ManualClock();
    const { server, client, address } = await startTestServer({
      config: { heartbeatMs: 10_000 },
      deps: { clock },
    });
    // 25 ms per command: rotations regularly find commands in flight.
    const fleet = await startEmulatedAgents({
      address,
      latencyMs: 25,
      agentOptions: { backoff: { initialMs: 20, maxMs: 200 } },
    });
    const before = await generationOf(client);
    const sessionsBefore = fleet.agents.map((a) => a.sessions);
    server.agents.configure({ maxStreamAgeMs: 400 });

    // REGISTER AND IGNORE EXISTING KEY bumps PRgeneration once per execution (SPC-4 §6.16.2): executions = delta.
    const failures: string[] = [];
    let good = 0;
    let nextKey = 0x100n;
    let stop = false;
    // Stops the load however the test ends (a failed expectation must not leave it calling a closed server).
    onTestFinished(() => {
      stop = true;
    });
    const load = Promise.all(
      DRIVE_PATHS.map(async (target) => {
        while (!stop) {
          nextKey += 1n;
          try {
            const { result } = await client.register({
              target,
              newKey: nextKey,
              ignoreExistingKey: true,
            });
            if (result?.outcome === Outcome.OUTCOME_GOOD) good += 1;
            else
              failures.push(
                `${target.agentId}: ${outcomeToJSON(result?.outcome ?? Outcome.OUTCOME_UNSPECIFIED)} ${result?.message ?? ''}`,
              );
          } catch (e) {
            failures.push(`${target.agentId}: ${(e as Error).message}`);
          }
        }
      }),
    );
    for (let round = 0; round < 3; round++) {
      const sessions = fleet.agents.map((a) => a.sessions);
      const streams = DRIVE_PATHS.map(({ agentId }) => server.agents.session(agentId));
      const goodBefore = good;
      // Every stream reaches its maximum age (at most 400 ms, jittered down): rotation begins for each.
      await clock.advance(400);
      expect(streams.map((stream) => stream?.rotating)).toEqual([true, true, true]);
      // Commands held while a stream rotates poll on the clock: move it on in small steps until every agent is
      // back on a new stream.
      await expect
        .poll(
          async () => {
            await clock.advance(20);
            return fleet.agents.every(
              (a, i) => a.sessions > (sessions[i] ?? 0) && a.state === 'connected',
            );
          },
          { timeout: 20_000 },
        )
        .toBe(true);
      // Commands ran across the rotation, not only before it.
      await expect
        .poll(
          async () => {
            await clock.advance(20);
            return good > goodBefore;
          },
          { timeout: 20_000 },
        )
        .toBe(true);
    }
    server.agents.configure({ maxStreamAgeMs: 0 });
    stop = true;
    await clock.advance(20); // releases any command still held for a rotation
    await load;

    expect(failures).toEqual([]);
    // Each agent had several sessions: the streams really were rotated under load.
    fleet.agents.forEach((agent, i) =>
      expect(agent.sessions - (sessionsBefore[i] ?? 0)).toBeGreaterThanOrEqual(3),
    );
    await expect.poll(() => fleet.agents.every((a) => a.state === 'connected')).toBe(true);
    expect((await generationOf(client)) - before).toBe(good);
  });

  it('sends Reconnect only once nothing is in flight and gives the agent no new command meanwhile', async () => {
    const { server, client, address } = await startTestServer({ config: { heartbeatMs: 200 } });
    const fleet = await startEmulatedAgents({ address, hosts: ['host-a'], latencyMs: 400 });
    const agentId = 'host-a';
    const slow = client.readKeys({ target: { agentId, path: '/dev/sg2' } });
    await expect.poll(() => server.agents.session(agentId)?.pending.size).toBe(1);
    const first = server.agents.session(agentId);
    first?.startRotation();
    expect(first?.rotating).toBe(true);
    expect(first?.reconnectSent).toBe(false); // a command is in flight: no Reconnect yet
    // A command sent during the rotation waits for the next session instead of going to the old one.
    const during = client.readKeys({ target: { agentId, path: '/dev/sg2' } });
    expect((await slow).result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(first?.reconnectSent).toBe(true);
    const { result } = await during;
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    const second = server.agents.session(agentId);
    expect(second).toBeDefined();
    expect(second?.sessionId).not.toBe(first?.sessionId);
    expect(first?.isEnded).toBe(true);
    expect(fleet.agent(agentId).sessions).toBe(2);
  });
});
