import type { CallContext } from 'nice-grpc-common';
import {
  Finding,
  FindingKind,
  PlanResponse,
  Severity,
  type ApplyRequest,
  type ApplyResponse,
  type DeepPartial,
  type PlanRequest,
} from '../../../gen/prfleet/v1/fleet.js';
import { notFound, shownInput } from '../../../common/errors.js';
import { defaultPrincipalOf } from '../../history.js';
import { analyzeUnit } from '../analyze.js';
import type { FleetDeps } from '../deps.js';
import { loadDesiredIndex } from '../desired.js';
import { loadKeyIndex } from '../key-index.js';
import { CommandLimiter } from '../limiter.js';
import { observeUnit } from '../observe.js';
import type { UnitPlan } from '../plan-model.js';
import { planDesired } from '../planner.js';
import { runRollout } from '../rollout.js';
import { selectUnits, type SelectedUnit } from '../selection.js';
import { suggest } from '../suggest.js';
import { checkSteps, rolloutSettings } from './rollout-settings.js';
import { requestedMs } from '../../deadline.js';

/** Device timeout per read while planning, ms. */
export const PLAN_READ_TIMEOUT_MS = 10_000;

/** The plan of an LU no desired state covers: no steps, one INFO finding saying so. */
function blocker(message: string, unit: SelectedUnit): UnitPlan {
  return {
    steps: [],
    blockers: [
      Finding.fromPartial({
        kind: FindingKind.FINDING_KIND_DRIFT,
        severity: Severity.SEVERITY_INFO,
        luId: unit.luId,
        loaderId: unit.loaderId,
        message,
        suggestedAction: suggest.setDesired(),
      }),
    ],
    incomplete: false,
  };
}

/** Plan: reads the selected LUs and plans the steps to their desired state (nothing is sent but reads). */
export async function plan(
  deps: FleetDeps,
  request: PlanRequest,
  ctx: CallContext,
): Promise<PlanResponse> {
  const { store } = deps;
  const units = selectUnits(deps.devices, request.selector);
  const timeoutMs = requestedMs(request.commandTimeout, PLAN_READ_TIMEOUT_MS, 'command_timeout');
  const [keys, desired] = await Promise.all([loadKeyIndex(store), loadDesiredIndex(store)]);
  const limiter = new CommandLimiter(256, 8);
  const plans = await Promise.all(
    units.map(async (unit) => {
      const desire = desired.desireFor(unit);
      if (desire === undefined)
        return blocker(
          `no desired state covers ${unit.luId} (loader ${unit.loaderId || 'unknown'})`,
          unit,
        );
      const obs = await observeUnit(unit, {
        read: deps.commands.read,
        limiter,
        timeoutMs,
        signal: ctx.signal,
      });
      return planDesired(obs, analyzeUnit(obs, keys), desire, keys);
    }),
  );
  return PlanResponse.fromPartial({
    steps: plans.flatMap((p) => p.steps),
    blockers: plans.flatMap((p) => p.blockers),
    logicalUnits: units.length,
    inDesiredState: plans.filter((p) => p.steps.length === 0 && p.blockers.length === 0).length,
  });
}

/** Apply: runs the given steps, or the planned ones, as a rollout; yields its events. */
export async function* apply(
  deps: FleetDeps,
  request: ApplyRequest,
  ctx: CallContext,
): AsyncGenerator<DeepPartial<ApplyResponse>> {
  const { store } = deps;
  const settings = rolloutSettings(request.options, 'apply', defaultPrincipalOf(ctx));
  const given = checkSteps(request.steps);
  const selected = selectUnits(deps.devices, request.selector);
  const units = given.size === 0 ? selected : selected.filter((u) => given.has(u.luId));
  for (const luId of given.keys()) {
    if (!units.some((u) => u.luId === luId))
      throw notFound(
        'logical unit',
        luId,
        `steps name logical unit ${shownInput(luId)}, which no selected agent reports`,
      );
  }
  const [keys, desired] = await Promise.all([loadKeyIndex(store), loadDesiredIndex(store)]);
  const planner = (
    obs: Parameters<typeof planDesired>[0],
    analysis: Parameters<typeof planDesired>[1],
  ) => {
    const desire = desired.desireFor(obs.unit);
    return desire === undefined
      ? blocker(`no desired state covers ${obs.unit.luId}`, obs.unit)
      : planDesired(obs, analysis, desire, keys);
  };
  for await (const event of runRollout(
    deps,
    { units, planner, givenSteps: given, keys, settings },
    ctx.signal,
  ))
    yield { event };
}
