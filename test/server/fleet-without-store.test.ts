import { createChannel, createClient, Status } from 'nice-grpc';
import { describe, expect, it, onTestFinished } from 'vitest';
import { FleetServiceDefinition } from '../../src/gen/prfleet/v1/fleet.js';
import { startTestServer } from '../helpers/server.js';

describe('FleetService on a server with the memory store', () => {
  it('answers FAILED_PRECONDITION naming the fix, for unary and streaming calls', async () => {
    const { address } = await startTestServer();
    const channel = createChannel(address);
    onTestFinished(() => channel.close());
    const fleet = createClient(FleetServiceDefinition, channel);
    await expect(fleet.listKeys({})).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining('PRFLEET_STORE=pglite'),
    });
    const audit = async () => {
      for await (const event of fleet.audit({})) void event;
    };
    await expect(audit()).rejects.toMatchObject({
      code: Status.FAILED_PRECONDITION,
      details: expect.stringContaining('need the durable store'),
    });
  });
});
