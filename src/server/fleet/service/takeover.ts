import type { CallContext } from 'nice-grpc-common';
import type {
  DeepPartial,
  TakeoverRequest,
  TakeoverResponse,
} from '../../../gen/prfleet/v1/fleet.js';
import {
  ErrorReason,
  failedPrecondition,
  invalidArgument,
  notFound,
  shownInput,
} from '../../../common/errors.js';
import { formatKey } from '../../../common/key-layout.js';
import { defaultPrincipalOf } from '../../history.js';
import type { FleetDeps } from '../deps.js';
import { loadDesiredIndex } from '../desired.js';
import { loadKeyIndex, type KeyIndex } from '../key-index.js';
import { planTakeover, type TakeoverSpec } from '../planner.js';
import { HISTORY_REASON_MAX, runRollout, type RolloutSettings } from '../rollout.js';
import type { SelectedUnit } from '../selection.js';
import { selectUnits } from '../selection.js';
import { judgeTakeover, kindName, verdictRecord } from '../takeover-proof.js';
import { DEFAULT_TAKEOVER_RULES } from '../takeover-rules.js';
import { PLAN_READ_TIMEOUT_MS } from './plan-apply.js';
import { rolloutSettings } from './rollout-settings.js';
import { purposeOf } from './store-errors.js';

/** A takeover request checked: who takes over with which key, from whom, on which LUs. */
interface CheckedTakeover {
  readonly keys: KeyIndex;
  readonly victim: NonNullable<TakeoverRequest['victim']>;
  readonly units: SelectedUnit[];
  readonly spec: TakeoverSpec;
}

/**
 * Checks a Takeover request before anything is read: a selector that names loaders or LUs (never fleet-wide), a
 * known taker with a key, a victim whose keys are not the taker's, LUs that exist, and a reason with force.
 * INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION naming what is wrong.
 */
async function checkTakeover(
  deps: FleetDeps,
  request: TakeoverRequest,
  settings: RolloutSettings,
): Promise<CheckedTakeover> {
  const sel = request.selector;
  if (sel === undefined || (sel.loaderIds.length === 0 && sel.luIds.length === 0)) {
    throw invalidArgument(
      'selector',
      'name the loaders (loader_ids) or LUs (lu_ids) to take over on; a takeover is never fleet-wide by default',
    );
  }
  if (request.agentId === '')
    throw invalidArgument('agent_id', 'required: the host that takes over');
  if (deps.devices.get(request.agentId) === undefined)
    throw notFound(
      'agent',
      request.agentId,
      `agent ${shownInput(request.agentId)} is unknown to this server`,
    );
  const keys = await loadKeyIndex(deps.store);
  const purpose = purposeOf(request.keyPurpose, 'key_purpose');
  const takerKey = request.key !== 0n ? request.key : keys.activeKey(request.agentId, purpose);
  if (takerKey === undefined) {
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: 'KEY',
      subject: `agents/${request.agentId}`,
      description: `${request.agentId} has no valid ${purpose} key: allocate one or pass key`,
    });
  }
  const victim = request.victim;
  if (victim === undefined) throw invalidArgument('victim', 'set victim_key or victim_agent_id');
  const victimKeys = victimKeysOf(victim, request.agentId, keys);
  if (victimKeys.has(takerKey))
    throw invalidArgument('key', `${formatKey(takerKey)} is also a victim key`);
  const units = selectUnits(deps.devices, sel);
  if (units.length === 0)
    throw notFound('logical unit', '', 'the selector matches no logical unit');
  const spec = {
    victimKeys,
    taker: request.agentId,
    takerKey,
    type: request.type,
    abort: request.abort,
  };
  if (request.force && settings.reason.trim() === '')
    throw invalidArgument(
      'options.reason',
      'required with force: say why the rules are overridden',
    );
  return { keys, victim, units, spec };
}

/**
 * Takeover: checks the request, judges it against the takeover rules (the verdict is the first event), and when
 * allowed runs the PREEMPTs as a rollout; a refused takeover fails with FAILED_PRECONDITION (a dry run just ends).
 */
export async function* takeover(
  deps: FleetDeps,
  request: TakeoverRequest,
  ctx: CallContext,
): AsyncGenerator<DeepPartial<TakeoverResponse>> {
  const settings = rolloutSettings(request.options, 'takeover', defaultPrincipalOf(ctx));
  const { keys, victim, units, spec } = await checkTakeover(deps, request, settings);
  const { victimKeys } = spec;
  const verdict = await judgeTakeover(
    deps,
    deps.takeoverRules ?? DEFAULT_TAKEOVER_RULES,
    {
      taker: request.agentId,
      victimKeys,
      ...(victim.$case === 'victimAgentId' ? { victimAgentId: victim.value } : {}),
      units,
      keys,
      desired: await loadDesiredIndex(deps.store),
      timeoutMs: Math.min(settings.timeoutMs, PLAN_READ_TIMEOUT_MS),
    },
    request.force,
    ctx.signal,
  );
  deps.log.info(
    {
      operationId: settings.operationId,
      taker: request.agentId,
      victims: [...victimKeys].map(formatKey),
      logicalUnits: units.length,
      verdict: kindName(verdict.kind),
      allowed: verdict.allowed,
      forced: verdict.forced,
    },
    'takeover requested',
  );
  yield { verdict };
  if (!verdict.allowed) {
    if (settings.dryRun) return;
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: 'TAKEOVER',
      subject: `agents/${victim.$case === 'victimAgentId' ? victim.value : formatKey(victim.value)}`,
      description: `takeover ${verdict.summary}`,
    });
  }
  for await (const event of runRollout(
    deps,
    {
      units,
      planner: (obs, analysis) => planTakeover(obs, analysis, spec),
      keys,
      settings,
      preemptRecord: verdictRecord(verdict, HISTORY_REASON_MAX),
    },
    ctx.signal,
  )) {
    yield { event };
  }
}

/** The keys a Takeover preempts: the one named, or every key the registry issued to the victim host. */
function victimKeysOf(
  victim: NonNullable<TakeoverRequest['victim']>,
  taker: string,
  keys: KeyIndex,
): Set<bigint> {
  if (victim.$case === 'victimKey') {
    if (victim.value === 0n) throw invalidArgument('victim_key', 'must not be 0');
    return new Set([victim.value]);
  }
  if (victim.value === taker)
    throw invalidArgument('victim_agent_id', 'the taker cannot preempt itself');
  const victimKeys = new Set(keys.keysOf(victim.value));
  if (victimKeys.size === 0)
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: 'KEY',
      subject: `agents/${victim.value}`,
      description: `the registry has no keys of ${victim.value}: take over by victim_key instead`,
    });
  return victimKeys;
}
