/**
 * The floors of an idle host agent, for bench/agent-weight.ts (which bundles this with esbuild, as the agent is):
 * no prfleet code, only what an agent of this design holds with each link, and koffi with a struct declared (the
 * FFI of the SG_IO transport, which every sgio agent loads for its start-up self-test). Prints a "connected" line
 * once the link is up, then idles. Usage: node agent-floor.cjs <link> <host:port>, where <link> is
 *
 *  - grpc-js: @grpc/grpc-js with one channel and one open AgentService.Connect stream (the agent's stream link);
 *  - http2: the same stream on a bare node:http2 session, no grpc-js (what grpc-js itself costs over it);
 *  - http1: node:http after one request on a kept-alive connection (the long-poll link's transport).
 */
import koffi from 'koffi';

const CONNECT = '/prfleet.v1.AgentService/Connect';
const connected = (): void => console.log('{"msg":"connected"}');

async function grpcStream(address: string): Promise<void> {
  // Loaded here: the other floors must not hold grpc-js (nor the node:http2 it loads).
  const { Client, connectivityState, credentials } = await import('@grpc/grpc-js');
  const client = new Client(address, credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
  const same = (b: Buffer): Buffer => b;
  const call = client.makeBidiStreamRequest(CONNECT, same, same);
  call.on('data', () => {});
  call.on('error', () => {});
  const channel = client.getChannel();
  const whenReady = (): void => {
    const state = channel.getConnectivityState(true);
    if (state === connectivityState.READY) connected();
    else channel.watchConnectivityState(state, Infinity, whenReady);
  };
  whenReady();
}

function http2Stream(address: string): void {
  const http2 = process.getBuiltinModule('node:http2');
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  const stream = session.request({
    ':method': 'POST',
    ':path': CONNECT,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('data', () => {});
  stream.on('error', () => {});
  session.once('connect', connected);
}

function http1KeptAlive(address: string): void {
  const http = process.getBuiltinModule('node:http');
  const [host, port] = address.split(':');
  const agent = new http.Agent({ keepAlive: true });
  http
    .get({ host, port: Number(port), path: '/healthz', agent }, (res) => {
      res.resume();
      res.once('end', connected);
    })
    .on('error', () => {});
}

const LINKS: Record<string, (address: string) => void | Promise<void>> = {
  'grpc-js': grpcStream,
  http2: http2Stream,
  http1: http1KeptAlive,
};

koffi.struct('agent_floor_t', { a: 'int', b: 'void *' });
const [link = '', address = ''] = process.argv.slice(2);
const open = LINKS[link];
if (open === undefined) throw new Error(`unknown link ${link} (${Object.keys(LINKS).join(', ')})`);
void open(address);
// Stays up whatever the link does (the server closes an idle kept-alive HTTP/1.1 connection after 5 s).
setInterval(() => {}, 1e9);
