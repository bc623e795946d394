/**
 * Child-process entry of the agent swarm (bench/agent-swarm.ts): PRFLEET_SWARM_HOSTS emulated agents of
 * swarmFabric() connected to PRFLEET_SWARM_SERVER, each device counting the PROUTs it executes. Prints
 * {"msg":"swarm ready"} once all are connected, {"msg":"swarm counts","seq":n,"counts":{…}} on each SIGUSR2 (n
 * counts the signals), and drains and exits on SIGTERM.
 */
import { createAgent, type Agent } from '../agent/agent.js';
import { createEmulatedFabric } from '../agent/fabric.js';
import { createLogger } from '../src/common/logger.js';
import { swarmFabric } from './agent-swarm.js';
import { countingSource, type ExecutionCounts } from './scale-cluster.js';

const server = process.env['PRFLEET_SWARM_SERVER'] ?? '';
const hosts = Number(process.env['PRFLEET_SWARM_HOSTS'] ?? 100);
const perLoader = Number(process.env['PRFLEET_SWARM_PER_LOADER'] ?? 32);
const BATCH = 100;

const print = (msg: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ msg, ...extra })}\n`);
const log = createLogger({ level: 'warn', name: 'agent-swarm' });

const executions: ExecutionCounts = new Map();
const fabric = createEmulatedFabric(swarmFabric(hosts, perLoader));
const agents: Agent[] = [];
let seq = 0;
process.on('SIGUSR2', () => {
  seq += 1;
  print('swarm counts', { seq, counts: Object.fromEntries(executions) });
});
let stopping = false;
process.once('SIGTERM', () => {
  stopping = true;
  void Promise.all(agents.map((a) => a.stop())).finally(() => {
    fabric.close();
    process.exit(0);
  });
});

const started = performance.now();
for (let i = 0; i < fabric.hosts.length && !stopping; i += BATCH) {
  const batch = fabric.hosts.slice(i, i + BATCH).map((host) =>
    createAgent(
      {
        server,
        agentId: host.id,
        hostname: host.id,
        plaintext: true,
        backoff: { initialMs: 100, maxMs: 1_000 },
        drainMs: 3_000,
      },
      { log, source: countingSource(host, executions) },
    ),
  );
  agents.push(...batch);
  await Promise.all(batch.map((agent) => agent.start()));
  await Promise.all(batch.map((agent) => agent.waitForState('connected')));
}
print('swarm ready', { agents: agents.length, ms: Math.round(performance.now() - started) });
