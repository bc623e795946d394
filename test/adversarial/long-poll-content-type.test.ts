// The long-poll link's content type. A media type's type and subtype are case-insensitive (RFC 9110 §8.3.1).
// Found: `Application/X-Protobuf` was refused with 415 while the same body as `application/x-protobuf` opened a
// session. Anything that is not that media type (another type, a longer subtype, a list, none) is still 415,
// and opens nothing.
import { describe, expect, it } from 'vitest';
import { LinkUpload } from '../../src/gen/prfleet/v1/agent.js';
import { startTestServer } from '../helpers/server.js';

const hello = (agentId: string) =>
  LinkUpload.encode({
    messages: [
      {
        message: {
          $case: 'hello',
          value: {
            agentId,
            hostname: 'h',
            version: 't',
            site: '',
            labels: {},
            transport: 'emulated',
            acceptsCommandBatches: true,
          },
        },
      },
    ],
  }).finish();

describe('the long-poll link’s content type', () => {
  it('is matched without regard to case, and nothing else is taken', async () => {
    const { port, server } = await startTestServer();
    const connect = (agentId: string, type: string | undefined) =>
      fetch(`http://127.0.0.1:${port}/agent/v1/connect`, {
        method: 'POST',
        headers: type === undefined ? {} : { 'content-type': type },
        body: hello(agentId),
      }).then((r) => r.status);
    for (const type of [
      'text/plain',
      'application/x-protobufx',
      'application/x-protobuf, text/plain',
      'application/octet-stream',
      '',
      undefined,
    ])
      expect(await connect('refused', type), String(type)).toBe(415);
    expect(server.agents.list()).toEqual([]);
    expect(await connect('upper', 'Application/X-Protobuf')).toBe(200);
    expect(await connect('params', 'application/x-protobuf; charset=binary')).toBe(200);
    expect(
      server.agents
        .list()
        .map((a) => a.hello.agentId)
        .sort(),
    ).toEqual(['params', 'upper']);
  });
});
