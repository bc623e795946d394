import type { EmulatedLogicalUnit, Initiator } from '../../src/emulator/index.js';
import {
  HostStatus,
  ScsiStatus,
  transportIdEquals,
  type ScsiRequest,
  type ScsiResponse,
} from '../../src/scsi/index.js';
import type { EmulatedNexus } from './emulated.js';

function sameNexus(a: Initiator, b: Initiator): boolean {
  return (
    a.relativeTargetPort === b.relativeTargetPort && transportIdEquals(a.transportId, b.transportId)
  );
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
 * The task sets of the LUs one emulated host sees. A command waits `latencyMs` in its LU's task set before the
 * LU runs it, so it can be aborted there as on a real target: PREEMPT AND ABORT completes the victims' queued
 * tasks with TASK ABORTED (40h), a logical unit reset all of them; a command whose latency exceeds its timeout
 * answers host status DID_TIME_OUT (03h) without running.
 */
export class EmulatedTaskSets {
  private readonly pending = new Map<EmulatedLogicalUnit, Set<PendingTask>>();
  private readonly unsubscribes: (() => void)[] = [];

  constructor(
    logicalUnits: Iterable<EmulatedLogicalUnit>,
    /** Time each command waits before it runs, ms; 0 runs it on the next tick. */
    public latencyMs: number,
  ) {
    for (const lu of new Set(logicalUnits)) {
      this.pending.set(lu, new Set());
      this.unsubscribes.push(
        lu.onAbortTasks((victims) => {
          for (const task of [...(this.pending.get(lu) ?? [])]) {
            if (victims.some((v) => sameNexus(v, task.initiator))) task.abort();
          }
        }),
      );
    }
  }

  /** Runs `request` on the nexus's LU after the latency (a reset at once). */
  run(nexus: EmulatedNexus, request: ScsiRequest): Promise<ScsiResponse> {
    const started = Date.now();
    if (request.reset === 'logical-unit') {
      // A task management function: it runs at once (not queued behind the LU's tasks) and aborts them.
      for (const task of [...(this.pending.get(nexus.logicalUnit) ?? [])]) task.abort();
      nexus.logicalUnit.reset();
      return Promise.resolve(statusResponse(request, ScsiStatus.GOOD, Date.now() - started));
    }
    const delay = this.latencyMs;
    if (delay <= 0) {
      return Promise.resolve().then(() => {
        return timed(nexus.logicalUnit.execute(nexus.initiator, request), Date.now() - started);
      });
    }
    return this.queue(nexus, request, started, delay);
  }

  /** Stops listening to the LUs' abort notifications. */
  close(): void {
    for (const unsubscribe of this.unsubscribes.splice(0)) unsubscribe();
  }

  /** Holds `request` in its LU's task set for `delay` ms (or until its timeout), abortable meanwhile. */
  private queue(
    nexus: EmulatedNexus,
    request: ScsiRequest,
    started: number,
    delay: number,
  ): Promise<ScsiResponse> {
    return new Promise<ScsiResponse>((resolve) => {
      const tasks = this.pending.get(nexus.logicalUnit) ?? new Set<PendingTask>();
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
}
