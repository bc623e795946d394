// A hostile Hello on either agent link (plaintext server: anyone may say Hello; on TLS, anyone with a stolen
// agent certificate). Found: nothing bounded or checked a Hello's strings (AgentService is not behind the edge),
// so one Hello could carry a megabyte of version or hostname, with control characters, into the registry, every
// ListAgents answer and the event log (an AGENT_CONNECTED event per reconnect). A Hello now passes the same
// edge rules as any client request (lengths by field name, no control characters, valid UTF-8): else it is
// refused (INVALID_ARGUMENT on the stream, 400 on the long-poll link) and no session opens. The same held for
// an inventory's paths (vendor, serial, LU id … went unchecked into ListDevices and PATH_APPEARED events): a
// path that breaks the rules is dropped (and logged), the agent's other paths are kept; control characters in a
// device's own INQUIRY text (vendor, product, revision, serial) are shown as '.' instead.
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
import { fakePath } from '../server/fake-agent.js';

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

describe('a hostile inventory', () => {
  let server: ServerProcess;
  let control: ControlClient;
  const output: string[] = [];

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({
      env: { PRFLEET_STORE: 'memory' },
      onLine: (line) => output.push(line),
    });
    control = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    control?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('drops the paths that break the rules, logs them, and keeps the others', async () => {
    const inventory: ConnectRequest = {
      message: {
        $case: 'inventory',
        value: {
          paths: [
            fakePath('/dev/sg0', 'naa.5000e11100000001'),
            fakePath('/dev/sg1', 'naa.5000e11100000002', { vendor: 'V'.repeat(1 << 20) }),
            fakePath('/dev/sg2', 'naa.5000e11100000003', { serial: 'S\u001b[2J\u0085' }),
            fakePath('/dev/sg3', 'naa.5000e11100000004', { loaderId: 'l\u001b[2J' }),
            fakePath('/dev/sg4', `naa.${'5'.repeat(500)}`),
          ],
        },
      },
    };
    const response = await fetch(`http://${server.address}/agent/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: LinkUpload.encode({ messages: [hello('inv'), inventory] }).finish(),
    });
    expect(response.status).toBe(200);
    await expect
      .poll(async () =>
        (await control.listDevices({})).logicalUnits.flatMap((u) =>
          u.paths.map((p) => p.path?.path),
        ),
      )
      .toEqual(['/dev/sg0', '/dev/sg2']);
    // A device's own odd INQUIRY text is shown with '.' for its control characters, not dropped.
    const { logicalUnits } = await control.listDevices({});
    const odd = logicalUnits.flatMap((u) => u.paths).find((p) => p.path?.path === '/dev/sg2');
    expect(odd?.path?.serial).toBe('S.[2J.');
    expect(output.join('\n')).toMatch(/inventory paths that break the request rules dropped/);
  });
});
