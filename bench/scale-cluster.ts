/**
 * Building blocks of the multi-instance test (test/scale) and benchmark (bench/scale.ts): server instances as
 * child processes sharing Redis and PostgreSQL, a fabric of many hosts, and a transport that counts every PROUT
 * the emulated devices execute (by service action key), so "executed twice" and "lost" can be checked.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FabricInput } from '../agent/fabric.js';
import type { DeviceSource } from '../agent/agent.js';
import type { EmulatedHost } from '../agent/fabric.js';
import { spawnNode, repoRoot, type ChildHandle } from '../src/demo/processes.js';

/** PERSISTENT RESERVE OUT operation code (SPC-4 §6.16). */
const PROUT_OPCODE = 0x5f;

/** One prfleet-server instance running as a child process. */
export interface ScaleServer {
  /** Its instance id (PRFLEET_INSTANCE_ID). */
  readonly instanceId: string;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** The child process. */
  readonly handle: ChildHandle;
}

/** Settings shared by the instances of one cluster. */
export interface ScaleClusterEnv {
  /** redis://127.0.0.1:6379 */
  readonly redisUrl: string;
  /** A key prefix of this run's own. */
  readonly redisPrefix: string;
  /** postgres://…/test */
  readonly databaseUrl: string;
  /** A schema of this run's own. */
  readonly schema: string;
  /** More PRFLEET_* settings. */
  readonly extra?: Readonly<Record<string, string>>;
}

/**
 * A built file (`src/server/main.js`, `agent/main.js`…) of the build this module belongs to: next to it when it
 * runs compiled (`dist/bench/…`, or a build elsewhere: `tsc --outDir /tmp/x`, then `node /tmp/x/bench/scale.js`
 * runs /tmp/x's server, not whatever `dist/` holds), else `<repo>/dist/…` (the tests run it from source).
 */
export function builtFile(relative: string): string {
  const own = resolve(dirname(fileURLToPath(import.meta.url)), '..', relative);
  return existsSync(own) ? own : resolve(repoRoot(), 'dist', relative);
}

/** A fresh Redis prefix and PostgreSQL schema for one run. */
export function uniqueClusterNames(tag: string): { redisPrefix: string; schema: string } {
  const id = `${process.pid}_${randomUUID().slice(0, 8)}`;
  return { redisPrefix: `prfleet-${tag}:${id}:`, schema: `prfleet_${tag}_${id}` };
}

/**
 * Starts the built `src/server/main.js` ({@link builtFile}: PORT=0, plaintext: explicitly asked for, loopback only) and waits
 * for its `listening` line.
 */
export async function startScaleServer(
  instanceId: string,
  env: ScaleClusterEnv,
): Promise<ScaleServer> {
  const handle = spawnNode(builtFile('src/server/main.js'), [], {
    name: `prfleet-server ${instanceId}`,
    env: {
      PORT: '0',
      PRFLEET_HOST: '127.0.0.1',
      PRFLEET_PLAINTEXT: 'true',
      PRFLEET_INSTANCE_ID: instanceId,
      PRFLEET_REDIS_URL: env.redisUrl,
      PRFLEET_REDIS_PREFIX: env.redisPrefix,
      DATABASE_URL: env.databaseUrl,
      PRFLEET_DB_SCHEMA: env.schema,
      PRFLEET_STORE: 'postgres',
      PRFLEET_LOG_LEVEL: 'info',
      ...env.extra,
    },
  });
  try {
    const entry = await handle.waitForLog(
      (e) => e['msg'] === 'listening' && typeof e['port'] === 'number',
      60_000,
    );
    return { instanceId, address: `127.0.0.1:${String(entry['port'])}`, handle };
  } catch (error) {
    await handle.stop({ signal: 'SIGKILL' });
    throw error;
  }
}

/**
 * A fabric of two SuperLoaders (4 LUs) seen by `hosts` hosts (`h001`…), each with one initiator port and a path
 * to every LU: every host contends with every other for the same LUs.
 */
export function manyHostsFabric(hosts: number, prefix = 'h', pathsPerHost = 4): FabricInput {
  const lus = ['loader1-changer', 'loader1-drive', 'loader2-changer', 'loader2-drive'].slice(
    0,
    pathsPerHost,
  );
  return {
    loaders: [
      {
        id: 'loader1',
        changer: {
          id: 'loader1-changer',
          profile: 'superloader-changer',
          serial: 'PM0000000001',
          naa: '0x5000e11100000001',
        },
        drives: [
          {
            id: 'loader1-drive',
            profile: 'lto-drive',
            serial: 'HU0000000001',
            naa: '0x5000e11100000002',
          },
        ],
      },
      {
        id: 'loader2',
        changer: {
          id: 'loader2-changer',
          profile: 'superloader-changer',
          serial: 'PM0000000002',
          naa: '0x5000e11100000003',
        },
        drives: [
          {
            id: 'loader2-drive',
            profile: 'lto-drive',
            serial: 'HU0000000002',
            naa: '0x5000e11100000004',
          },
        ],
      },
    ],
    hosts: Array.from({ length: hosts }, (_, i) => {
      const port = `sas:0x5006${(i + 1).toString(16).padStart(12, '0')}`;
      return {
        id: `${prefix}${String(i + 1).padStart(hosts >= 1000 ? 4 : 3, '0')}`,
        site: 'dc1',
        initiatorPorts: [port],
        paths: lus.map((lu, j) => ({
          node: `/dev/sg${j}`,
          lu,
          initiatorPort: port,
          relativeTargetPort: (i % 2) + 1,
        })),
      };
    }),
  };
}

/** PROUTs the emulated devices executed, by SERVICE ACTION RESERVATION KEY (hex). */
export type ExecutionCounts = Map<string, number>;

/** A device source over an emulated host that counts each PROUT reaching the device (not refused before it). */
export function countingSource(host: EmulatedHost, counts: ExecutionCounts): DeviceSource {
  const transport = host.transport;
  return {
    transport: {
      kind: transport.kind,
      async open(path, options) {
        const device = await transport.open(path, options);
        return {
          path: device.path,
          close: () => device.close(),
          async execute(request, executeOptions) {
            const response = await device.execute(request, executeOptions);
            const data = request.dataOut;
            if (request.cdb[0] === PROUT_OPCODE && data !== undefined && data.length >= 16) {
              // Parameter list bytes 8..15: SERVICE ACTION RESERVATION KEY (SPC-4 §6.16.3).
              const key = Buffer.from(data.subarray(8, 16)).toString('hex');
              counts.set(key, (counts.get(key) ?? 0) + 1);
            }
            return response;
          },
        };
      },
    },
    listTargets: async () =>
      host.paths.map((p) => ({
        path: p.path,
        initiatorPort: p.initiatorPort,
        loaderId: p.loaderId,
      })),
  };
}
