/**
 * The floor of an idle host agent, for bench/agent-weight.ts (which bundles it with esbuild, as the agent is):
 * no prfleet code, only what any agent of this design holds: @grpc/grpc-js with one channel and one open
 * AgentService.Connect stream (the agent's link to the server), and koffi with a struct declared (the FFI of the
 * SG_IO transport, which every sgio agent loads for its start-up self-test). Prints a "connected" line once the
 * channel is READY, then idles. Usage: node agent-floor.cjs <host:port>
 */
import { Client, connectivityState, credentials } from '@grpc/grpc-js';
import koffi from 'koffi';

koffi.struct('agent_floor_t', { a: 'int', b: 'void *' });
const client = new Client(process.argv[2] ?? '', credentials.createInsecure(), {
  'grpc.enable_channelz': 0,
});
const same = (b: Buffer): Buffer => b;
const call = client.makeBidiStreamRequest('/prfleet.v1.AgentService/Connect', same, same);
call.on('data', () => {});
call.on('error', () => {});
const channel = client.getChannel();
const whenReady = (): void => {
  const state = channel.getConnectivityState(true);
  if (state === connectivityState.READY) console.log('{"msg":"connected"}');
  else channel.watchConnectivityState(state, Infinity, whenReady);
};
whenReady();
