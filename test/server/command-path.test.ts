/**
 * The one command path (src/server/commands): a repeated key is answered from the journal first, a repeat of an
 * UNKNOWN reads the LU and settles it, keys are scoped per principal, and the journal and the history are one
 * record. Real servers on an embedded store, scripted agents over real streams.
 */
import { randomBytes } from 'node:crypto';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../../src/gen/prfleet/v1/agent.js';
import { Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import { scopedKey } from '../../src/server/commands/keys.js';
import { rolloutSettings } from '../../src/server/fleet/fleet-service.js';
import { actorOnBehalfOf, type PrincipalOf } from '../../src/server/history.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { startTestServer } from '../helpers/server.js';
import { answerReconcileReads, connectFakeAgent, fakePath, type FakeAgent } from './fake-agent.js';

const LU = 'naa.5000e11100000077';
const target = { luId: LU, agentId: 'host-p', path: '/dev/sg7' };
const principalFromHeader: PrincipalOf = (ctx) => {
  const user = ctx.metadata.get('x-user');
  return typeof user === 'string' && user !== '' ? user : 'anonymous';
};
const as = (user: string) => ({ metadata: Metadata({ 'x-user': user }) });

let store: Store;
beforeAll(async () => {
  store = await openStore({ inMemory: true });
}, 180_000);
afterAll(async () => {
  await store?.close();
});

async function server(instanceId: string) {
  const started = await startTestServer({
    deps: { store, principalOf: principalFromHeader },
    config: { instanceId },
  });
  return started;
}

async function agentOn(address: string, started: Awaited<ReturnType<typeof server>>) {
  const agent = await connectFakeAgent(address, {
    agentId: target.agentId,
    paths: [fakePath(target.path, LU)],
  });
  await expect.poll(() => started.server.agents.get(target.agentId)?.paths.length).toBe(1);
  return agent;
}

const answerReads = answerReconcileReads;

const freshKey = (name: string) => `${name}-${randomBytes(4).toString('hex')}`;

describe('the command path', () => {
  it('answers a repeated key from the journal before looking up the agent: offline, or unknown after a restart', async () => {
    const first = await server('path-journal-first');
    const agent = await agentOn(first.address, first);
    const key = freshKey('first');
    const call = first.client.register({ target, newKey: 0x51n, options: { idempotencyKey: key } });
    const sent = await agent.nextCommand();
    agent.respond(sent);
    const { result } = await call;
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);

    agent.end();
    await expect.poll(() => first.server.agents.session(target.agentId)).toBeUndefined();
    const offline = await first.client.register({
      target,
      newKey: 0x51n,
      options: { idempotencyKey: key },
    });
    expect(offline.result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      commandId: sent.commandId,
    });

    // Another server on the same store, where host-p never connected: the record still answers.
    const second = await server('path-journal-first-2');
    expect(second.server.agents.get(target.agentId)).toBeUndefined();
    const restarted = await second.client.register({
      target,
      newKey: 0x51n,
      options: { idempotencyKey: key },
    });
    expect(restarted.result).toMatchObject({
      outcome: Outcome.OUTCOME_GOOD,
      commandId: sent.commandId,
      idempotencyKey: key,
    });
  });

  it('settles a repeat of an UNKNOWN by reading the LU: applied → recorded GOOD, never sent again', async () => {
    const started = await server('path-reconcile-applied');
    const agent = await agentOn(started.address, started);
    const key = freshKey('applied');
    const request = {
      target,
      newKey: 0x52n,
      options: { idempotencyKey: key, precondition: { expectedGeneration: 3 } },
    };
    const call = started.client.register(request);
    await answerGeneration(agent, 3); // the precondition's read
    await agent.nextCommand(); // the PROUT reaches the agent, whose process then dies
    agent.kill();
    expect((await call).result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);

    const back = await agentOn(started.address, started);
    const repeat = started.client.register(request);
    await answerReads(back, 4, [0x52n]);
    const { result } = await repeat;
    expect(result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(result?.message).toMatch(/reconciled/);
    // Recorded: the next repeat is answered from the journal, nothing goes to the agent.
    const again = await started.client.register(request);
    expect(again.result?.outcome).toBe(Outcome.OUTCOME_GOOD);
    expect(
      back.received.filter((m) => m.message?.$case === 'command').map((m) => kindOf(m)),
    ).toEqual(['prin', 'prin']);
    const { entries } = await started.client.listHistory({ luId: LU });
    expect(entries.filter((e) => e.idempotencyKey === key)).toHaveLength(2);
    expect(
      (await store.history.list({ luId: LU, limit: 1000 }))
        .filter((e) => e.idempotencyKey === key)
        .map((e) => e.outcome),
    ).toEqual(['OUTCOME_UNKNOWN', 'RECONCILED_APPLIED']);
    expect((await store.journal.get(key))?.state).toBe('done');
    expect((await started.client.verifyHistory({})).ok).toBe(true);
  });

  it('settles a repeat of an UNKNOWN by reading the LU: not applied → sent again under the same key, once', async () => {
    const started = await server('path-reconcile-resend');
    const agent = await agentOn(started.address, started);
    const key = freshKey('resend');
    const request = {
      target,
      newKey: 0x53n,
      options: { idempotencyKey: key, precondition: { expectedGeneration: 5 } },
    };
    const call = started.client.register(request);
    await answerGeneration(agent, 5);
    await agent.nextCommand();
    agent.kill();
    expect((await call).result?.outcome).toBe(Outcome.OUTCOME_UNKNOWN);

    const back = await agentOn(started.address, started);
    const repeat = started.client.register(request);
    await answerReads(back, 5, []); // unchanged: it never ran
    await answerGeneration(back, 5); // the precondition, checked again before the re-send
    const resent = await back.nextCommand();
    expect(resent.kind?.$case).toBe('prout');
    expect(resent.idempotencyKey).toBe(key);
    back.respond(resent);
    const { result } = await repeat;
    expect(result).toMatchObject({ outcome: Outcome.OUTCOME_GOOD, commandId: resent.commandId });
    expect((await store.journal.get(key))?.state).toBe('done');
    expect(
      (await store.history.list({ luId: LU, limit: 1000 }))
        .filter((e) => e.idempotencyKey === key)
        .map((e) => e.outcome),
    ).toEqual(['OUTCOME_UNKNOWN', 'OUTCOME_GOOD']);
  });

  it('scopes idempotency keys per principal: another principal’s key reveals nothing and blocks nothing', async () => {
    const started = await server('path-scoped');
    const agent = await agentOn(started.address, started);
    // Bob reuses Alice's key for another command (no "already used … agent host-p"), and for the same command
    // (her recorded result is hers alone): both run.
    for (const bobsKey of [0xb1n, 0xa1n]) {
      const key = freshKey('shared');
      const alice = started.client.register(
        { target, newKey: 0xa1n, options: { idempotencyKey: key } },
        as('alice'),
      );
      const alices = await agent.nextCommand();
      agent.respond(alices);
      expect((await alice).result).toMatchObject({
        outcome: Outcome.OUTCOME_GOOD,
        idempotencyKey: key,
      });
      const request = { target, newKey: bobsKey, options: { idempotencyKey: key } };
      const bob = started.client.register(request, as('bob'));
      const command = await agent.nextCommand();
      expect(command.kind?.$case === 'prout' && command.kind.value.serviceActionKey).toBe(bobsKey);
      // The agent sees each principal's key apart too (its own duplicate check must not block Bob).
      expect(command.idempotencyKey).not.toBe(alices.idempotencyKey);
      agent.respond(command);
      expect((await bob).result).toMatchObject({
        outcome: Outcome.OUTCOME_GOOD,
        commandId: command.commandId,
        idempotencyKey: key,
      });
      // Bob's repeat is his own recorded answer.
      const repeat = await started.client.register(request, as('bob'));
      expect(repeat.result?.commandId).toBe(command.commandId);
      expect((await store.journal.get(scopedKey('alice', key)))?.state).toBe('done');
      const actors = (await store.history.list({ luId: LU, limit: 1000 }))
        .filter((e) => e.idempotencyKey === key)
        .map((e) => e.actor);
      expect(actors).toEqual(['alice', 'bob']);
    }
  });
});

function kindOf(m: { message?: { $case: string; value?: unknown } | undefined }): string {
  return m.message?.$case === 'command'
    ? ((m.message.value as Command).kind?.$case ?? '')
    : (m.message?.$case ?? '');
}

/** Answers a precondition's READ KEYS with `generation`. */
async function answerGeneration(agent: FakeAgent, generation: number): Promise<void> {
  const read = await agent.nextCommand();
  expect(read.kind?.$case).toBe('prin');
  agent.respond(read, { data: { $case: 'readKeys', value: { generation, keys: [] } } });
}

describe('the actor', () => {
  it('is the authenticated principal; names a client supplies are kept as whom it was done for', () => {
    const settings = rolloutSettings({ operationId: 'op-7', reason: '' } as never, 'apply', 'ada');
    expect(settings.actor).toBe('ada');
    expect(actorOnBehalfOf('ada', 'bob')).toBe('ada (on behalf of bob)');
    expect(actorOnBehalfOf('ada', 'ada')).toBe('ada');
  });
});

describe('client helpers', () => {
  it('give every PROUT an idempotency key of their own, the same on every retry of the call', async () => {
    const started = await server('path-client-keys');
    const agent = await agentOn(started.address, started);
    const call = started.client.register({ target, newKey: 0x61n });
    const sent = await agent.nextCommand();
    expect(sent.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    agent.respond(sent);
    expect((await call).result?.idempotencyKey).toBe(sent.idempotencyKey);
    // A dry run is never keyed (nothing is journaled).
    const dry = await started.client.register({ target, newKey: 0x61n, options: { dryRun: true } });
    expect(dry.result?.idempotencyKey).toBe('');
  });
});
