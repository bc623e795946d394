// A Hello whose strings are not valid UTF-8, on either agent link of a prfleet-server process. Found: the edge's
// strict decoding covers client RPCs only; an agent's messages are decoded by ts-proto, which puts U+FFFD in place
// of the bad bytes and carries on, so such a Hello opened a session and its text went into the registry,
// ListAgents and the event log with replacement characters, although a Hello passes "the same string rules"
// (docs/api-limits.md: valid UTF-8 among them). It is now refused like any Hello that breaks a rule
// (INVALID_ARGUMENT on the stream, 400 on the long-poll link) naming the field, and no session opens.
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { Client, credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Status } from 'nice-grpc';
import { createControlClient, type ControlClient } from '../../src/common/client.js';
import { startServerProcess, type ServerProcess } from '../../src/demo/processes.js';
import { ensureBuilt } from '../helpers/processes.js';

const BAD = Uint8Array.from([0x68, 0xff, 0xfe]); // "h" and two bytes no UTF-8 string holds

/** A ConnectRequest carrying a Hello (agent_id 1, hostname 2, version 3, site 4, labels 5) with raw bytes. */
function helloRequest(agentId: string, fields: { hostname?: Uint8Array; site?: Uint8Array }) {
  const hello = new BinaryWriter().uint32(10).string(agentId);
  hello.uint32(18).bytes(fields.hostname ?? Buffer.from('h'));
  hello.uint32(26).string('t');
  if (fields.site !== undefined) hello.uint32(34).bytes(fields.site);
  return new BinaryWriter().uint32(10).bytes(hello.finish()).finish();
}

/** A LinkUpload (messages = 1) of these ConnectRequests. */
function upload(...requests: Uint8Array[]) {
  const writer = new BinaryWriter();
  for (const request of requests) writer.uint32(10).bytes(request);
  return writer.finish();
}

/** Opens a Connect stream, sends `request` raw, resolves with how the server ended it. */
function connectRaw(
  address: string,
  request: Uint8Array,
): Promise<{ code: number; details: string }> {
  const client = new Client(address, credentials.createInsecure());
  const call = client.makeBidiStreamRequest(
    '/prfleet.v1.AgentService/Connect',
    (b: Buffer) => b,
    (b: Buffer) => b,
  );
  const timer = setTimeout(() => call.cancel(), 5_000);
  return new Promise((resolve) => {
    call.on('data', () => {});
    call.on('error', (e: { code: number; details: string }) => {
      clearTimeout(timer);
      client.close();
      resolve({ code: e.code, details: e.details });
    });
    call.write(Buffer.from(request));
  });
}

describe('a Hello with invalid UTF-8', () => {
  let server: ServerProcess;
  let control: ControlClient;

  beforeAll(async () => {
    await ensureBuilt();
    server = await startServerProcess({ env: { PRFLEET_STORE: 'memory' } });
    control = createControlClient(server.address);
  }, 600_000);

  afterAll(async () => {
    control?.close();
    await server?.handle.stop({ graceMs: 5000 });
  });

  it('is refused on the stream with INVALID_ARGUMENT naming the field', async () => {
    const end = await connectRaw(server.address, helloRequest('utf8-stream', { hostname: BAD }));
    expect(end.code).toBe(Status.INVALID_ARGUMENT);
    expect(end.details).toMatch(/hello\.hostname.*not valid UTF-8/);
  });

  it('is refused on the long-poll link with 400 naming the field', async () => {
    const response = await fetch(`http://${server.address}/agent/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: upload(helloRequest('utf8-lp', { site: BAD })),
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/hello\.site.*not valid UTF-8/);
  });

  it('opened no session; a Hello with a U+FFFD of its own (valid UTF-8) still connects', async () => {
    expect((await control.listAgents({})).agents.map((a) => a.agentId)).toEqual([]);
    const response = await fetch(`http://${server.address}/agent/v1/connect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: upload(helloRequest('utf8-fine', { hostname: Buffer.from('h\ufffd') })),
    });
    expect(response.status).toBe(200);
    expect((await control.listAgents({})).agents).toMatchObject([
      { agentId: 'utf8-fine', hostname: 'h\ufffd' },
    ]);
  });
});
