import { describe, expect, it } from 'vitest';
import { startTestServer } from '../helpers/server.js';

describe('server smoke', () => {
  it('lists no agents on a fresh server', async () => {
    const { client } = await startTestServer();
    expect((await client.listAgents({})).agents).toEqual([]);
  });
});
