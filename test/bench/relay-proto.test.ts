import { afterEach, describe, expect, it } from 'vitest';
import type { Server } from 'nice-grpc';
import { ReadKeysRequest } from '../../src/gen/prfleet/v1/control.js';
import { CommandResult, Outcome } from '../../src/gen/prfleet/v1/scsi.js';
import {
  createProtoRelayClient,
  decodeSample,
  encodeSample,
  openProtoRelaySession,
  runProtoRelayAgent,
  startProtoRelayServer,
} from '../../bench/relay-proto.js';

/** A READ KEYS result as prfleet's agent sends it (fields the relay must carry through both hops). */
const sample = CommandResult.fromPartial({
  commandId: 'sampled-id',
  outcome: Outcome.OUTCOME_GOOD,
  statusName: 'GOOD',
  duration: { seconds: 0n, nanos: 41_000 },
  cdb: Buffer.from('5e0000000000000020000000', 'hex'),
  dataIn: Buffer.from('0000000100000008aabbccddeeff0011', 'hex'),
  agentId: 'host-a',
  path: '/dev/sg2',
  luId: 'naa.5000e11100000002',
});
const request = ReadKeysRequest.fromPartial({
  target: { luId: sample.luId, agentId: sample.agentId, path: sample.path },
});

describe('bench protobuf relay (the floor with prfleet messages, bench/relay-proto.ts)', () => {
  const stops: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function start(): Promise<string> {
    let agentConnected!: () => void;
    const connected = new Promise<void>((resolve) => (agentConnected = resolve));
    const { server, port }: { server: Server; port: number } =
      await startProtoRelayServer(agentConnected);
    stops.push(() => server.forceShutdown());
    const address = `127.0.0.1:${port}`;
    const controller = new AbortController();
    const agent = runProtoRelayAgent(
      address,
      decodeSample(encodeSample(sample)),
      controller.signal,
    );
    stops.push(async () => {
      controller.abort();
      await agent;
    });
    await connected;
    return address;
  }

  it('answers a unary READ KEYS with the sampled result under the id the server gave its Command', async () => {
    const address = await start();
    const client = createProtoRelayClient(address, request);
    stops.push(() => client.close());
    const first = await client.call();
    const second = await client.call();
    expect({ ...first, commandId: '' }).toEqual({ ...sample, commandId: '' });
    expect(first?.commandId).toMatch(/^relay000-relay000-\d{18}$/);
    expect(second?.commandId).not.toBe(first?.commandId);
  });

  it('answers each session request under its request id', async () => {
    const address = await start();
    const session = openProtoRelaySession(address, request);
    stops.push(() => session.close());
    const [a, b] = await Promise.all([session.call(), session.call()]);
    expect([a.requestId, b.requestId]).toEqual(['1', '2']);
    expect(a.reply?.$case === 'result' && a.reply.value.dataIn).toEqual(sample.dataIn);
  });
});
