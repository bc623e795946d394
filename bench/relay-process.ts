/**
 * Child-process entry of the bare relay, so the relay runs in the same three-process layout as prfleet
 * (client, server, agent): `relay-process.js server <down> <up> <reply>` prints {"msg":"listening","port"} and
 * {"msg":"agent connected"}; `relay-process.js agent <host:port> <down> <up> <reply>` connects and answers.
 * `relay-process.js proto-server` and `relay-process.js proto-agent <host:port> <sample>` run the protobuf relay
 * (bench/relay-proto.ts; `sample` is the base64 of a CommandResult). All stop on SIGTERM.
 */
import { runRelayAgent, startRelayServer, type RelaySizes } from './relay.js';
import { decodeSample, runProtoRelayAgent, startProtoRelayServer } from './relay-proto.js';

const [role, ...rest] = process.argv.slice(2);
const log = (msg: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ msg, ...extra })}\n`);

function sizesFrom(values: readonly (string | undefined)[]): RelaySizes {
  const [down, up, reply] = values.map((v) => Number(v));
  if (![down, up, reply].every((n) => Number.isInteger(n) && n !== undefined && n >= 0)) {
    throw new Error(
      `usage: relay-process.js server|agent [host:port] <down> <up> <reply> (got ${values.join(' ')})`,
    );
  }
  return { down: down!, up: up!, reply: reply! };
}

if (role === 'server') {
  const { server, port } = await startRelayServer(sizesFrom(rest), () => log('agent connected'));
  log('listening', { port });
  process.once('SIGTERM', () => {
    server.forceShutdown();
    process.exit(0);
  });
} else if (role === 'agent') {
  const [address, ...sizes] = rest;
  const controller = new AbortController();
  process.once('SIGTERM', () => controller.abort());
  await runRelayAgent(address ?? '', sizesFrom(sizes), controller.signal);
} else if (role === 'proto-server') {
  const { server, port } = await startProtoRelayServer(() => log('agent connected'));
  log('listening', { port });
  process.once('SIGTERM', () => {
    server.forceShutdown();
    process.exit(0);
  });
} else if (role === 'proto-agent') {
  const [address, sample] = rest;
  const controller = new AbortController();
  process.once('SIGTERM', () => controller.abort());
  await runProtoRelayAgent(address ?? '', decodeSample(sample ?? ''), controller.signal);
} else {
  process.stderr.write('usage: relay-process.js server|agent …\n');
  process.exitCode = 1;
}
