import type { EmulatedLogicalUnit, Initiator } from '../../src/emulator/index.js';
import {
  HostStatus,
  ScsiStatus,
  transportIdEquals,
  type ScsiRequest,
  type ScsiResponse,
} from '../../src/scsi/index.js';
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

function sameNexus(a: Initiator, b: Initiator): boolean {
  return (
    a.relativeTargetPort === b.relativeTargetPort && transportIdEquals(a.transportId, b.transportId)
  );
}

function abortError(): Error {
  const e = new Error('aborted before submission');
  e.name = 'AbortError';
  return e;
}

/** A response the host adapter made up (no device answer): the emulated equivalent of a host_status. */
function hostResponse(request: ScsiRequest, hostStatus: number, durationMs: number): ScsiResponse {
  return {
    status: ScsiStatus.GOOD,
    sense: new Uint8Array(0),
    dataIn: new Uint8Array(0),
    resid: request.dataInLength,
    hostStatus,
    driverStatus: 0,
    durationMs,
  };
}

/** `response` as it reached the host, `durationMs` after submission (a literal: no spread on the hot path). */
function timed(response: ScsiResponse, durationMs: number): ScsiResponse {
  return {
    status: response.status,
    sense: response.sense,
    dataIn: response.dataIn,
    resid: response.resid,
    hostStatus: response.hostStatus,
    driverStatus: response.driverStatus,
    durationMs,
  };
}

function statusResponse(request: ScsiRequest, status: number, durationMs: number): ScsiResponse {
  return { ...hostResponse(request, HostStatus.DID_OK, durationMs), status };
}

interface PendingTask {
  readonly initiator: Initiator;
  readonly abort: () => void;
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
  let latencyMs = options.latencyMs ?? 0;
  let closed = false;
  const pending = new Map<EmulatedLogicalUnit, Set<PendingTask>>();
  const unsubscribes: (() => void)[] = [];

  for (const lu of new Set(nexuses.map((n) => n.logicalUnit))) {
    pending.set(lu, new Set());
    unsubscribes.push(
      lu.onAbortTasks((victims) => {
        for (const task of [...(pending.get(lu) ?? [])]) {
          if (victims.some((v) => sameNexus(v, task.initiator))) task.abort();
        }
      }),
    );
  }

  function check(path: string): EmulatedNexus {
    if (closed) throw new TransportError(`${path}: transport closed`, path, ENODEV, 'ENODEV');
    const fault = faults.get(path);
    if (fault) throw new TransportError(`${path}: ${fault.code}`, path, fault.errno, fault.code);
    const nexus = byPath.get(path);
    if (!nexus) throw new TransportError(`${path}: no such device node`, path, ENOENT, 'ENOENT');
    return nexus;
  }

  function run(nexus: EmulatedNexus, request: ScsiRequest): Promise<ScsiResponse> {
    const started = Date.now();
    if (request.reset === 'logical-unit') {
      // A task management function: it runs at once (not queued behind the LU's tasks) and aborts them.
      for (const task of [...(pending.get(nexus.logicalUnit) ?? [])]) task.abort();
      nexus.logicalUnit.reset();
      return Promise.resolve(statusResponse(request, ScsiStatus.GOOD, Date.now() - started));
    }
    const delay = latencyMs;
    if (delay <= 0) {
      return Promise.resolve().then(() => {
        return timed(nexus.logicalUnit.execute(nexus.initiator, request), Date.now() - started);
      });
    }
    return new Promise<ScsiResponse>((resolve) => {
      const tasks = pending.get(nexus.logicalUnit) ?? new Set<PendingTask>();
      const timesOut = request.timeoutMs > 0 && request.timeoutMs < delay;
      const finish = (response: ScsiResponse): void => {
        clearTimeout(timer);
        tasks.delete(task);
        resolve(response);
      };
      const task: PendingTask = {
        initiator: nexus.initiator,
        abort: () => finish(statusResponse(request, ScsiStatus.TASK_ABORTED, Date.now() - started)),
      };
      const timer = setTimeout(
        () => {
          if (timesOut) {
            finish(hostResponse(request, HostStatus.DID_TIME_OUT, Date.now() - started));
            return;
          }
          finish(timed(nexus.logicalUnit.execute(nexus.initiator, request), Date.now() - started));
        },
        timesOut ? request.timeoutMs : delay,
      );
      tasks.add(task);
    });
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
      latencyMs = ms;
    },
    close() {
      closed = true;
      for (const unsubscribe of unsubscribes.splice(0)) unsubscribe();
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
          return run(check(path), request);
        },
        async close() {
          open = false;
        },
      };
      return device;
    },
  };
}
