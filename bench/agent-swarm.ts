/**
 * A swarm of emulated agents in ONE child process (bench/agent-swarm-process.ts), for the fault-injection suite
 * (test/faults) and the soak benchmark (bench/soak.ts): hundreds of agents sharing one emulated fabric and one
 * event loop, cheap enough for a 2-core CI machine, yet a separate process the test can SIGSTOP / SIGCONT. The
 * emulated devices count every PROUT they execute by its SERVICE ACTION RESERVATION KEY (countingSource), and the
 * child prints those counts as one JSON line on SIGUSR2, so "ran twice" and "ran without a record" can be checked
 * against the server's journal and history.
 */
import type { FabricInput } from '../agent/fabric.js';
import { spawnNode, type ChildHandle, type SpawnNodeOptions } from '../src/demo/processes.js';
import { builtFile, type ExecutionCounts } from './scale-cluster.js';

/** Hosts sharing one loader's drive: well under the emulated LU's 64 registrations (one per I_T nexus). */
export const HOSTS_PER_LOADER = 32;

/** The swarm's host ids: `a0001`, `a0002`, … */
export function swarmHostId(index: number): string {
  return `a${String(index + 1).padStart(4, '0')}`;
}

/**
 * A fabric of `hosts` hosts, each with one path (`/dev/sg0`) to the drive of loader `i mod L`, with
 * L = ceil(hosts / perLoader) loaders: PROUTs spread over L LUs (the server runs one PROUT at a time per LU), and
 * each drive sees at most `perLoader` I_T nexuses.
 */
export function swarmFabric(hosts: number, perLoader = HOSTS_PER_LOADER): FabricInput {
  const loaders = Math.max(1, Math.ceil(hosts / perLoader));
  const naa = (n: number) => `0x5000e112${n.toString(16).padStart(8, '0')}`;
  return {
    loaders: Array.from({ length: loaders }, (_, k) => ({
      id: `sw${k}`,
      changer: {
        id: `sw${k}-changer`,
        profile: 'superloader-changer' as const,
        serial: `SWC${String(k).padStart(6, '0')}`,
        naa: naa(2 * k + 1),
      },
      drives: [
        {
          id: `sw${k}-drive`,
          profile: 'lto-drive' as const,
          serial: `SWD${String(k).padStart(6, '0')}`,
          naa: naa(2 * k + 2),
        },
      ],
    })),
    hosts: Array.from({ length: hosts }, (_, i) => {
      const port = `sas:0x5007${(i + 1).toString(16).padStart(12, '0')}`;
      return {
        id: swarmHostId(i),
        site: 'dc1',
        initiatorPorts: [port],
        paths: [
          {
            node: '/dev/sg0',
            lu: `sw${i % loaders}-drive`,
            initiatorPort: port,
            relativeTargetPort: (i % 2) + 1,
          },
        ],
      };
    }),
  };
}

/** The running swarm. */
export interface AgentSwarm {
  /** The child process (SIGSTOP / SIGCONT it with `handle.signal`). */
  readonly handle: ChildHandle;
  /** The host (agent) ids, each with one path, `/dev/sg0`. */
  readonly agentIds: readonly string[];
  /** PROUTs the swarm's devices executed so far, by service action key (16 hex digits). */
  counts(): Promise<ExecutionCounts>;
  /** SIGTERM: the agents drain and stop. */
  stop(): Promise<void>;
}

/** Options of {@link startAgentSwarm}. */
export interface AgentSwarmOptions {
  /** Server address(es), comma-separated. */
  readonly server: string;
  /** How many agents. */
  readonly hosts: number;
  /** Hosts per loader. @default HOSTS_PER_LOADER */
  readonly perLoader?: number;
  /** Every output line of the child. */
  readonly onLine?: SpawnNodeOptions['onLine'];
  /** Longest wait for every agent to connect, ms. @default 120000 */
  readonly readyTimeoutMs?: number;
}

/** Starts the swarm process and waits until every agent is connected. */
export async function startAgentSwarm(options: AgentSwarmOptions): Promise<AgentSwarm> {
  const handle = spawnNode(builtFile('bench/agent-swarm-process.js'), [], {
    name: 'agent-swarm',
    env: {
      PRFLEET_SWARM_SERVER: options.server,
      PRFLEET_SWARM_HOSTS: String(options.hosts),
      PRFLEET_SWARM_PER_LOADER: String(options.perLoader ?? HOSTS_PER_LOADER),
    },
    ...(options.onLine === undefined ? {} : { onLine: options.onLine }),
  });
  try {
    await handle.waitForLog((e) => e['msg'] === 'swarm ready', options.readyTimeoutMs ?? 120_000);
  } catch (error) {
    await handle.stop({ signal: 'SIGKILL' });
    throw error;
  }
  let seq = 0;
  let last: Promise<unknown> = Promise.resolve();
  const counts = (): Promise<ExecutionCounts> => {
    // One request at a time: signals do not queue, so each SIGUSR2 waits for the line it asked for.
    const next = last.then(async () => {
      seq += 1;
      const wanted = seq;
      handle.signal('SIGUSR2');
      const entry = await handle.waitForLog(
        (e) => e['msg'] === 'swarm counts' && e['seq'] === wanted,
        30_000,
      );
      return new Map(Object.entries(entry['counts'] as Record<string, number>));
    });
    last = next.catch(() => undefined);
    return next;
  };
  return {
    handle,
    agentIds: Array.from({ length: options.hosts }, (_, i) => swarmHostId(i)),
    counts,
    async stop() {
      if (!handle.hasExited()) await handle.stop({ graceMs: 10_000 });
    },
  };
}
