// Issue 11, point 5: one caller cannot starve the others. Per principal (token name here) at most so many open
// CommandSessions and commands in flight; the greedy caller gets RESOURCE_EXHAUSTED with ErrorInfo
// PRINCIPAL_QUOTA and a QuotaFailure, the other caller keeps being served.
import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import {
  ErrorInfo,
  errorDetailsClientMiddleware,
  QuotaFailure,
  RichClientError,
} from 'nice-grpc-error-details';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  ControlServiceDefinition,
  type CommandSessionRequest,
  type DeepPartial,
} from '../../src/gen/prfleet/v1/control.js';
import { AsyncQueue } from '../../src/common/async-queue.js';
import {
  createAuthMiddleware,
  createMemoryTokenStore,
  createToken,
} from '../../src/server/auth/index.js';
import { createFairShare, fairSharePrincipalOf, peerHost } from '../../src/server/fair-share.js';
import { startTestServer } from '../helpers/server.js';
import { connectFakeAgent, fakePath } from './fake-agent.js';

const LU = 'naa.5000e11100000002';
const target = { agentId: 'slow', path: '/dev/sg1' };

/** A server limited to 2 sessions and 3 commands per principal, tokens 'greedy' and 'polite', one fake agent. */
async function startLimitedServer() {
  const tokens = createMemoryTokenStore();
  const greedy = (await createToken(tokens, { name: 'greedy', role: 'viewer' })).token;
  const polite = (await createToken(tokens, { name: 'polite', role: 'viewer' })).token;
  const started = await startTestServer({
    config: { principalLimits: { maxSessions: 2, maxCommands: 3 } },
    deps: { controlMiddleware: createAuthMiddleware({ tokens }) },
  });
  // Commands to this agent wait until the test answers them: what is in flight is what the test says.
  const agent = await connectFakeAgent(started.address, {
    agentId: 'slow',
    paths: [fakePath('/dev/sg1', LU)],
  });
  await expect.poll(() => started.server.agents.get('slow')?.paths.length).toBe(1);
  const channel = createChannel(started.address);
  onTestFinished(() => channel.close());
  const as = (token: string) =>
    createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(ControlServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      });
  return { agent, greedy: as(greedy), polite: as(polite) };
}

/** Asserts `error` is RESOURCE_EXHAUSTED {PRINCIPAL_QUOTA} for `principal` with a QuotaFailure. */
function expectQuotaError(error: unknown, principal: string, quota: 'sessions' | 'commands') {
  expect(error).toBeInstanceOf(RichClientError);
  const rich = error as RichClientError;
  expect(rich.code).toBe(Status.RESOURCE_EXHAUSTED);
  const info = rich.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
  expect(info).toMatchObject({ reason: 'PRINCIPAL_QUOTA', metadata: { principal, quota } });
  const failure = rich.extra.find((d): d is QuotaFailure => d.$type === QuotaFailure.$type);
  expect(failure?.violations[0]?.subject).toBe(principal);
}

/** Opens a session (the call starts with the first next()) and returns its request queue and replies. */
function openSession(client: Awaited<ReturnType<typeof startLimitedServer>>['greedy']) {
  const requests = new AsyncQueue<DeepPartial<CommandSessionRequest>>(100);
  onTestFinished(() => requests.close());
  const replies = client.commandSession(requests)[Symbol.asyncIterator]();
  // nice-grpc starts the call when the replies are first asked for.
  const first = replies.next();
  first.catch(() => {});
  return { requests, replies, first };
}

describe('fair share per principal', () => {
  it('refuses commands over the principal limit, and serves another principal meanwhile', async () => {
    const { agent, greedy, polite } = await startLimitedServer();
    // Three READ KEYS of the greedy caller reach the agent and wait there.
    const held = [1, 2, 3].map(() => greedy.readKeys({ target }));
    const commands = [
      await agent.nextCommand(),
      await agent.nextCommand(),
      await agent.nextCommand(),
    ];
    // A fourth is refused before anything is sent.
    const refused = await greedy.readKeys({ target }).catch((e: unknown) => e);
    expectQuotaError(refused, 'token:greedy', 'commands');
    // The polite caller is served.
    const politeRead = polite.readKeys({ target });
    agent.respond(await agent.nextCommand());
    expect((await politeRead).result).toBeDefined();
    // Once the greedy caller's commands finish, it may send again.
    for (const command of commands) agent.respond(command);
    await Promise.all(held);
    const again = greedy.readKeys({ target });
    agent.respond(await agent.nextCommand());
    expect((await again).result).toBeDefined();
  });

  it('refuses a session over the principal limit, and counts session commands as commands in flight', async () => {
    const { agent, greedy, polite } = await startLimitedServer();
    const sessions = [openSession(greedy), openSession(greedy)];
    // Each session is open on the server once its first command reaches the agent.
    sessions.forEach((s, i) =>
      s.requests.push({ requestId: `s${i}`, command: { $case: 'readKeys', value: { target } } }),
    );
    const inFlight = [await agent.nextCommand(), await agent.nextCommand()];
    const third = openSession(greedy);
    const refused = await third.first.catch((e: unknown) => e);
    expectQuotaError(refused, 'token:greedy', 'sessions');

    // One more command fills the greedy caller's 3; the next, on a session, is refused in-band.
    sessions[0]!.requests.push({
      requestId: 'x1',
      command: { $case: 'readKeys', value: { target } },
    });
    inFlight.push(await agent.nextCommand());
    sessions[1]!.requests.push({
      requestId: 'x2',
      command: { $case: 'readKeys', value: { target } },
    });
    const inBand = await sessions[1]!.first;
    expect(inBand.value).toMatchObject({
      requestId: 'x2',
      reply: {
        $case: 'error',
        value: { code: Status.RESOURCE_EXHAUSTED, reason: 'PRINCIPAL_QUOTA' },
      },
    });

    // The polite caller opens a session and is served.
    const politeSession = openSession(polite);
    politeSession.requests.push({
      requestId: 'p',
      command: { $case: 'readKeys', value: { target } },
    });
    agent.respond(await agent.nextCommand());
    expect((await politeSession.first).value).toMatchObject({
      requestId: 'p',
      reply: { $case: 'result' },
    });
    for (const command of inFlight) agent.respond(command);
  });

  it('names the principal by token, else by the client address without its port', () => {
    expect(peerHost('ipv4:127.0.0.1:50123')).toBe('127.0.0.1');
    expect(peerHost('ipv6:[::1]:50123')).toBe('::1');
    expect(peerHost('unix:/run/prfleet.sock')).toBe('/run/prfleet.sock');
    const metadata = Metadata();
    expect(fairSharePrincipalOf({ metadata, peer: 'ipv4:10.0.0.7:4000' })).toBe('peer:10.0.0.7');
    const token = { metadata, peer: 'ipv4:10.0.0.7:4000', principal: { name: 'alice' } };
    expect(fairSharePrincipalOf(token as never)).toBe('token:alice');
  });

  it('counts and releases slots exactly once; 0 means unlimited', () => {
    const share = createFairShare({ maxSessions: 1, maxCommands: 0 });
    const release = share.openSession('p');
    expect(() => share.openSession('p')).toThrow(/1 CommandSessions open/);
    release();
    release();
    expect(share.usage('p')).toEqual({ sessions: 0, commands: 0 });
    share.openSession('p');
    const many = Array.from({ length: 1000 }, () => share.startCommand('p'));
    expect(share.usage('p')).toEqual({ sessions: 1, commands: 1000 });
    many.forEach((r) => r());
    expect(share.usage('p').commands).toBe(0);
  });
});
