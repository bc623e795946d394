// A hostile Hello on either agent link (plaintext server: anyone may say Hello; on TLS, anyone with a stolen
// agent certificate). Found: nothing bounded or checked a Hello's strings (AgentService is not behind the edge),
// so one Hello could carry a megabyte of version or hostname, with control characters, into the registry, every
// ListAgents answer and the event log (an AGENT_CONNECTED event per reconnect). A Hello now passes the same
// edge rules as any client request (lengths by field name, no control characters, valid UTF-8): else it is
// refused (INVALID_ARGUMENT on the stream, 400 on the long-poll link) and no session opens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc';
import {
  createAgentClient,
  createControlClient,
  type AgentClient,
  type ControlClient,
} from '../../src/common/client.js';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import {
  LinkUpload,
  type ConnectRequest,
  type DeepPartial,
  type Hello,
} from '../../src/gen/prfleet/v1/agent.js';
import { ensureBuilt } from '../helpers/processes.js';

const hello = (agentId: string, extra: DeepPartial<Hello> = {}): ConnectRequest => ({
  message: {
    $case: 'hello',
    value: {
      agentId,
      hostname: agentId,
      version: 't',
      site: '',
      labels: {},
      transport: 'emulated',
      acceptsCommandBatches: true,
      ...extra,
    } as Hello,
  },
});

const BAD: readonly [string, DeepPartial<Hello>, string][] = [
  ['a megabyte of version', { version: 'v'.repeat(1 << 20) }, 'hello.version'],
  ['terminal escapes in the hostname', { hostname: 'h\u001b]0;owned\u0007' }, 'hello.hostname'],
  ['a newline in the site', { site: 'dc1\nFORGED' }, 'hello.site'],
  ['a label value of 10 KiB', { labels: { role: 'x'.repeat(10_240) } }, 'hello.labels'],
];

describe('a hostile Hello', () => {
  let server: ServerProcess;
  let control: ControlClient;
  let agents: AgentClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
    control = createControlClient(server.address);
    agents = createAgentClient(server.address);
  }, 600_000);

  afterAll(async () => {
    control?.close();
    agents?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  it.each(BAD)(
    'on the long-poll link: %s is refused with 400 naming the field',
    async (_w, extra, field) => {
      const response = await fetch(`http://${server.address}/agent/v1/connect`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: LinkUpload.encode({ messages: [hello('evil-lp', extra)] }).finish(),
      });
      expect(response.status).toBe(400);
      expect(await response.text()).toContain(field);
    },
  );

  it.each(BAD)(
    'on the stream: %s is refused with INVALID_ARGUMENT naming the field',
    async (_w, extra, field) => {
      async function* requests() {
        yield hello('evil-stream', extra);
        await new Promise((r) => setTimeout(r, 5_000));
      }
      const error = await (async () => {
        for await (const _ of agents.connect(requests())) return undefined;
        return undefined;
      })().catch((e: unknown) => e);
      expect(error).toMatchObject({ code: Status.INVALID_ARGUMENT });
      expect((error as { details: string }).details).toContain(field);
    },
  );

  it('opened no session for any of them, and a plain Hello still connects', async () => {
    const { agents: listed } = await control.listAgents({});
    expect(listed.map((a) => a.agentId)).toEqual([]);
    const response = await fetch(`http://${server.address}/agent/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: LinkUpload.encode({
        messages: [hello('plain', { labels: { role: 'media' } })],
      }).finish(),
    });
    expect(response.status).toBe(200);
  });
});
