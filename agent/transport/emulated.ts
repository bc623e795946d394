import type { EmulatedLogicalUnit, Initiator } from '../../src/emulator/index.js';
import { EmulatedTaskSets } from './emulated-task-sets.js';
import { TransportError, type ScsiDevice, type ScsiTransport } from './transport.js';

/** One emulated path: a device node name on a host, and the I_T nexus it is on one LU. */
export interface EmulatedNexus {
  /** Device node name as the host sees it, e.g. "/dev/sg0". */
  readonly path: string;
  /** The logical unit behind the path. */
  readonly logicalUnit: EmulatedLogicalUnit;
  /** Initiator port × relative target port: who the LU thinks is asking. */
  readonly initiator: Initiator;
}

/** Options for {@link createEmulatedTransport}. */
export interface EmulatedTransportOptions {
  /**
   * Time each command spends in the LU's task set before it runs, in ms; 0 runs it on the next tick. With
   * latency, PREEMPT AND ABORT can abort a victim's queued task (TASK ABORTED), as on a real target.
   * @default 0
   */
  readonly latencyMs?: number;
}

/** A path that the test made fail: every open/execute rejects with this errno until it is restored. */
interface PathFault {
  readonly errno: number;
  readonly code: string;
}

/** Emulated transport plus test controls for one host's view of the fabric. */
export interface EmulatedTransport extends ScsiTransport {
  readonly kind: 'emulated';
  /** Paths this host has, in fabric order. */
  paths(): readonly EmulatedNexus[];
  /** Makes a path fail like a vanished node (ENODEV by default) until {@link restorePath}. */
  failPath(path: string, fault?: { errno: number; code: string }): void;
  /** Undoes {@link failPath}. */
  restorePath(path: string): void;
  /** Changes the per-command latency (ms) from now on. */
  setLatency(latencyMs: number): void;
  /** Stops listening to the LUs (abort notifications); open devices fail afterwards. */
  close(): void;
}

const ENODEV = 19;
const ENOENT = 2;

function abortError(): Error {
  const e = new Error('aborted before submission');
  e.name = 'AbortError';
  return e;
}

/**
 * A ScsiTransport over the in-memory emulator: `open(path)` finds the nexus, `execute` hands the request BYTES to
 * `EmulatedLogicalUnit.execute` as that nexus. Commands wait `latencyMs` in a task set first; PREEMPT AND ABORT
 * completes the victims' queued tasks with TASK ABORTED (40h), and a command whose latency exceeds its timeout
 * answers host status DID_TIME_OUT (03h) without running.
 */
export function createEmulatedTransport(
  nexuses: readonly EmulatedNexus[],
  options: EmulatedTransportOptions = {},
): EmulatedTransport {
  const byPath = new Map(nexuses.map((n) => [n.path, n]));
  const faults = new Map<string, PathFault>();
  const taskSets = new EmulatedTaskSets(
    nexuses.map((n) => n.logicalUnit),
    options.latencyMs ?? 0,
  );
  let closed = false;

  function check(path: string): EmulatedNexus {
    if (closed) throw new TransportError(`${path}: transport closed`, path, ENODEV, 'ENODEV');
    const fault = faults.get(path);
    if (fault) throw new TransportError(`${path}: ${fault.code}`, path, fault.errno, fault.code);
    const nexus = byPath.get(path);
    if (!nexus) throw new TransportError(`${path}: no such device node`, path, ENOENT, 'ENOENT');
    return nexus;
  }

  return {
    kind: 'emulated',
    paths: () => nexuses,
    failPath(path, fault = { errno: ENODEV, code: 'ENODEV' }) {
      faults.set(path, fault);
    },
    restorePath(path) {
      faults.delete(path);
    },
    setLatency(ms) {
      taskSets.latencyMs = ms;
    },
    close() {
      closed = true;
      taskSets.close();
    },
    async open(path, openOptions) {
      if (openOptions?.signal?.aborted) throw abortError();
      check(path);
      let open = true;
      const device: ScsiDevice = {
        path,
        async execute(request, executeOptions) {
          if (executeOptions?.signal?.aborted) throw abortError();
          if (!open) throw new TransportError(`${path}: device closed`, path, 9, 'EBADF');
          return taskSets.run(check(path), request);
        },
        async close() {
          open = false;
        },
      };
      return device;
    },
  };
}
