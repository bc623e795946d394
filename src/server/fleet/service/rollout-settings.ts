import { Precondition } from '../../../gen/prfleet/v1/control.js';
import { PlanStep, type RolloutOptions } from '../../../gen/prfleet/v1/fleet.js';
import { ProutAction } from '../../../gen/prfleet/v1/scsi.js';
import { invalidArgument } from '../../../common/errors.js';
import { ANONYMOUS } from '../../history.js';
import { newOperationId, type RolloutSettings } from '../rollout.js';
import { requestedMs } from '../../deadline.js';

/** Rollout defaults. */
export const ROLLOUT_DEFAULTS = {
  /** LUs worked on at once. */
  maxConcurrency: 4,
  /** Failed steps that stop the rollout. */
  errorThreshold: 1,
  /** Device timeout per command, ms. */
  timeoutMs: 30_000,
  /** Re-plans per LU after it changed under us. */
  maxReplans: 3,
} as const;

/** Guard rails from the request, defaults filled in; INVALID_ARGUMENT naming the bad field. */
export function rolloutSettings(
  options: RolloutOptions | undefined,
  verb: string,
  principal: string = ANONYMOUS,
): RolloutSettings {
  const o = options;
  const bounded = (value: number | undefined, field: string, fallback: number, max: number) => {
    if (value === undefined || value === 0) return fallback;
    if (value > max) throw invalidArgument(`options.${field}`, `${value} is more than ${max}`);
    return value;
  };
  const timeoutMs = requestedMs(
    o?.commandTimeout,
    ROLLOUT_DEFAULTS.timeoutMs,
    'options.command_timeout',
  );
  const operationId = o?.operationId || newOperationId();
  if (!/^[A-Za-z0-9._:-]{1,100}$/.test(operationId)) {
    throw invalidArgument(
      'options.operation_id',
      'letters, digits, ".", "_", ":" or "-", at most 100',
    );
  }
  return {
    maxConcurrency: bounded(
      o?.maxConcurrency,
      'max_concurrency',
      ROLLOUT_DEFAULTS.maxConcurrency,
      1000,
    ),
    errorThreshold: bounded(
      o?.errorThreshold,
      'error_threshold',
      ROLLOUT_DEFAULTS.errorThreshold,
      1_000_000,
    ),
    rollbackOnAbort: o?.rollbackOnAbort ?? false,
    timeoutMs,
    maxReplans: bounded(o?.maxReplans, 'max_replans', ROLLOUT_DEFAULTS.maxReplans, 100),
    operationId,
    reason: o?.reason ?? '',
    dryRun: o?.dryRun ?? false,
    // The authenticated principal; the client's operation id is in every journal key and the history's reason.
    actor: principal,
  };
}

/** The given steps by LU, in sequence order; INVALID_ARGUMENT naming the first incomplete one. */
export function checkSteps(steps: readonly PlanStep[]): Map<string, PlanStep[]> {
  const byLu = new Map<string, PlanStep[]>();
  steps.forEach((s, i) => {
    const at = `steps[${i}]`;
    if (s.luId === '') throw invalidArgument(`${at}.lu_id`, 'required');
    if (s.agentId === '') throw invalidArgument(`${at}.agent_id`, 'required');
    if (s.path === '') throw invalidArgument(`${at}.path`, 'required');
    if (s.prout === undefined || s.prout.action === ProutAction.PROUT_ACTION_UNSPECIFIED)
      throw invalidArgument(`${at}.prout`, 'required (with an action)');
    const list = byLu.get(s.luId) ?? [];
    list.push(
      PlanStep.fromPartial({ ...s, precondition: s.precondition ?? Precondition.fromPartial({}) }),
    );
    byLu.set(s.luId, list);
  });
  for (const list of byLu.values()) list.sort((a, b) => a.sequence - b.sequence);
  return byLu;
}
