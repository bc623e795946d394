import { ServerError, Status } from 'nice-grpc-common';
import type { Server } from 'nice-grpc';
import { Precondition } from '../../gen/prfleet/v1/control.js';
import {
  DecodeKeyResponse,
  DesiredState,
  Finding,
  FindingKind,
  FleetServiceDefinition,
  PlanResponse,
  PlanStep,
  Severity,
  type FleetServiceImplementation,
  type RolloutOptions,
  type TakeoverRequest,
} from '../../gen/prfleet/v1/fleet.js';
import { durationToMs } from '../../common/command.js';
import { directServiceDefinition } from '../../common/service-definition.js';
import {
  ErrorReason,
  failedPrecondition,
  invalidArgument,
  notFound,
  quoteInput,
  shownInput,
} from '../../common/errors.js';
import { KEY_PURPOSE_NAMES, formatKey, type KeyPurpose } from '../../common/key-layout.js';
import {
  KeySpaceExhaustedError,
  NotFoundError,
  StoreInputError,
  VersionConflictError,
  type JsonValue,
} from '../store/index.js';
import { pathsByLu, toLogicalUnit } from '../devices.js';
import { analyzeUnit } from './analyze.js';
import { suggest } from './suggest.js';
import { runAudit } from './audit.js';
import type { FleetDeps } from './deps.js';
import { loadDesiredIndex, recordToProto, toStoreScope, validateDesiredState } from './desired.js';
import {
  foreignOwner,
  keyRecordToProto,
  loadKeyIndex,
  ownerOfRecord,
  type KeyIndex,
} from './key-index.js';
import { CommandLimiter } from './limiter.js';
import { observeUnit } from './observe.js';
import { planDesired, planTakeover } from './planner.js';
import type { UnitPlan } from './plan-model.js';
import { HISTORY_REASON_MAX, newOperationId, runRollout, type RolloutSettings } from './rollout.js';
import { judgeTakeover, kindName, verdictRecord } from './takeover-proof.js';
import { DEFAULT_TAKEOVER_RULES } from './takeover-rules.js';
import { resetLogicalUnit } from './lu-reset.js';
import { ElementViewCache, listLoaders } from './loaders.js';
import { actorOnBehalfOf, ANONYMOUS, defaultPrincipalOf } from '../history.js';
import { selectUnits, type SelectedUnit } from './selection.js';

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

/** Device timeout per read while planning, ms. */
const PLAN_READ_TIMEOUT_MS = 10_000;

/** Maps store errors to RPC errors (bad input, unknown record, lost compare-and-set, exhausted key space). */
export function storeErrorToRpc(e: unknown, fieldPrefix = ''): unknown {
  if (e instanceof StoreInputError)
    return invalidArgument(`${fieldPrefix}${snake(e.field)}`, e.message);
  if (e instanceof NotFoundError) return notFound('record', '', e.message);
  if (e instanceof VersionConflictError) return new ServerError(Status.ABORTED, e.message);
  if (e instanceof KeySpaceExhaustedError)
    return new ServerError(Status.RESOURCE_EXHAUSTED, e.message);
  return e;
}

function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

async function mapStore<T>(fn: () => Promise<T>, fieldPrefix = ''): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw storeErrorToRpc(e, fieldPrefix);
  }
}

function purposeOf(value: string, field: string): KeyPurpose {
  const purpose = value === '' ? 'backup' : value;
  if (!(KEY_PURPOSE_NAMES as string[]).includes(purpose)) {
    throw invalidArgument(
      field,
      `${quoteInput(value)} is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  return purpose as KeyPurpose;
}

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
  const timeoutMs = o?.commandTimeout ? durationToMs(o.commandTimeout) : ROLLOUT_DEFAULTS.timeoutMs;
  if (!(timeoutMs > 0)) throw invalidArgument('options.command_timeout', 'must be positive');
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

function checkSteps(steps: readonly PlanStep[]): Map<string, PlanStep[]> {
  const byLu = new Map<string, PlanStep[]>();
  steps.forEach((s, i) => {
    const at = `steps[${i}]`;
    if (s.luId === '') throw invalidArgument(`${at}.lu_id`, 'required');
    if (s.agentId === '') throw invalidArgument(`${at}.agent_id`, 'required');
    if (s.path === '') throw invalidArgument(`${at}.path`, 'required');
    if (s.prout === undefined || s.prout.action === 0)
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

function webhooksOf(deps: FleetDeps): NonNullable<FleetDeps['webhooks']> {
  if (deps.webhooks === undefined)
    throw new ServerError(Status.FAILED_PRECONDITION, 'this server delivers no webhooks');
  return deps.webhooks;
}

/** The FleetService implementation over the router, the agent registry and H7's store. */
export function createFleetService(fleetDeps: FleetDeps): FleetServiceImplementation {
  // One element view cache: audits refresh it, ListLoaders reuses what is fresh.
  const elementViews = new ElementViewCache();
  const deps: FleetDeps = { ...fleetDeps, elementViews };
  const { store, log } = deps;

  return {
    audit: (request, ctx) => runAudit(deps, request, ctx.signal),

    listLoaders: (request, ctx) => listLoaders(deps, elementViews, request, ctx.signal),

    watch(request, ctx) {
      if (deps.watch === undefined)
        throw new ServerError(Status.FAILED_PRECONDITION, 'this server keeps no event log');
      return deps.watch(request, ctx);
    },
    resetLogicalUnit: (request, ctx) =>
      resetLogicalUnit(deps, request, defaultPrincipalOf(ctx), ctx.signal),

    addWebhook: async (request, ctx) => webhooksOf(deps).addWebhook(request, ctx),
    listWebhooks: async (request) => webhooksOf(deps).listWebhooks(request),
    removeWebhook: async (request) => webhooksOf(deps).removeWebhook(request),

    async allocateKey(request) {
      const purpose = purposeOf(request.purpose, 'purpose');
      const warnings = [
        ...unknownAgentWarnings(deps, [request.agentId]),
        ...unknownSiteWarnings(deps, request.site),
      ];
      const record = await mapStore(() =>
        store.keys.allocate({
          site: request.site,
          agentId: request.agentId,
          purpose,
          owner: request.owner,
          ...(request.note === '' ? {} : { note: request.note }),
        }),
      );
      log.info(
        {
          key: formatKey(record.key),
          agentId: record.agentId,
          site: record.site,
          purpose,
          owner: record.owner,
        },
        'key allocated',
      );
      return { key: keyRecordToProto(record), warnings };
    },

    async listKeys(request) {
      const purpose = request.purpose === '' ? undefined : purposeOf(request.purpose, 'purpose');
      const records = await mapStore(() =>
        store.keys.list({
          ...(request.agentId === '' ? {} : { agentId: request.agentId }),
          ...(request.site === '' ? {} : { site: request.site }),
          ...(purpose === undefined ? {} : { purpose }),
          includeRevoked: request.includeRevoked,
        }),
      );
      return { keys: records.map(keyRecordToProto) };
    },

    async revokeKey(request, ctx) {
      if (request.key === 0n) throw invalidArgument('key', 'required (0 is "no key")');
      if (request.revokedBy === '') throw invalidArgument('revoked_by', 'required');
      const by = actorOnBehalfOf(defaultPrincipalOf(ctx), request.revokedBy);
      const record = await mapStore(() =>
        store.keys.revoke(request.key, {
          by,
          ...(request.reason === '' ? {} : { reason: request.reason }),
        }),
      );
      log.info({ key: formatKey(record.key), by, reason: request.reason }, 'key revoked');
      return { key: keyRecordToProto(record) };
    },

    async decodeKey(request) {
      const reading = await mapStore(() => store.keys.decodeKey(request.key));
      if (reading.kind === 'registry') {
        return DecodeKeyResponse.fromPartial({
          owner: ownerOfRecord(reading.record),
          record: keyRecordToProto(reading.record),
          layout: 'registry',
          confidence: 'pattern',
        });
      }
      return DecodeKeyResponse.fromPartial({
        owner: foreignOwner(request.key),
        layout: reading.kind,
        confidence: reading.confidence,
      });
    },

    async setDesiredState(request, ctx) {
      const scope = toStoreScope(request.scope, 'scope');
      const state = validateDesiredState(request.state, scope);
      if (request.updatedBy === '') throw invalidArgument('updated_by', 'required');
      const by = actorOnBehalfOf(defaultPrincipalOf(ctx), request.updatedBy);
      const record = await mapStore(() =>
        store.desired.put(scope, desiredStateJson(state), {
          actor: by,
          ...(request.expectedVersion === undefined
            ? {}
            : { expectedVersion: request.expectedVersion }),
        }),
      );
      // Warnings the server can see now; the state is stored anyway (hosts may simply not be connected yet).
      const keys = await loadKeyIndex(store);
      const hosts = new Set(state.registeredAgentIds);
      for (const r of [state.changer, state.drives])
        if (r && r.holderAgentId !== '') hosts.add(r.holderAgentId);
      const warnings: Finding[] = [
        ...unknownScopeWarnings(deps, scope, state.groupSite),
        ...unknownAgentWarnings(deps, hosts),
      ];
      for (const agentId of hosts) {
        if (keys.activeKey(agentId, state.keyPurpose as KeyPurpose) === undefined) {
          warnings.push(
            Finding.fromPartial({
              kind: FindingKind.FINDING_KIND_MISSING_KEY,
              severity: Severity.SEVERITY_WARNING,
              agentId,
              message: `${agentId} has no valid ${state.keyPurpose} key`,
              suggestedAction: suggest.allocateKey(
                agentId,
                deps.devices.get(agentId)?.hello.site ?? '',
                state.keyPurpose,
              ),
            }),
          );
        }
      }
      log.info(
        { scope, version: record.version, by, warnings: warnings.length },
        'desired state set',
      );
      return { record: recordToProto(record), warnings };
    },

    async getDesiredState(request) {
      if (request.scope?.scope === undefined)
        return { records: (await store.desired.list()).map(recordToProto) };
      const scope = toStoreScope(request.scope, 'scope');
      const record = await mapStore(() => store.desired.get(scope));
      if (record === undefined)
        throw notFound(
          'desired state',
          `${scope.kind}/${scope.id}`,
          `no desired state for ${scope.kind} ${shownInput(scope.id)}`,
        );
      return { records: [recordToProto(record)] };
    },

    async plan(request, ctx) {
      const units = selectUnits(deps.devices, request.selector);
      const timeoutMs = request.commandTimeout
        ? durationToMs(request.commandTimeout)
        : PLAN_READ_TIMEOUT_MS;
      if (!(timeoutMs > 0)) throw invalidArgument('command_timeout', 'must be positive');
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
            router: deps.router,
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
    },

    async *apply(request, ctx) {
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
    },

    async *takeover(request, ctx) {
      const settings = rolloutSettings(request.options, 'takeover', defaultPrincipalOf(ctx));
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
      const keys = await loadKeyIndex(store);
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
      if (victim === undefined)
        throw invalidArgument('victim', 'set victim_key or victim_agent_id');
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
      const verdict = await judgeTakeover(
        deps,
        deps.takeoverRules ?? DEFAULT_TAKEOVER_RULES,
        {
          taker: request.agentId,
          victimKeys,
          ...(victim.$case === 'victimAgentId' ? { victimAgentId: victim.value } : {}),
          units,
          keys,
          desired: await loadDesiredIndex(store),
          timeoutMs: Math.min(settings.timeoutMs, PLAN_READ_TIMEOUT_MS),
        },
        request.force,
        ctx.signal,
      );
      log.info(
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
    },
  };
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

/** A warning for each agent id this server does not know (as SetDesiredState and AllocateKey give them). */
function unknownAgentWarnings(deps: FleetDeps, agentIds: Iterable<string>): Finding[] {
  return [...agentIds]
    .filter((agentId) => agentId !== '' && deps.devices.get(agentId) === undefined)
    .map((agentId) =>
      Finding.fromPartial({
        kind: FindingKind.FINDING_KIND_UNREACHABLE,
        severity: Severity.SEVERITY_WARNING,
        agentId,
        message: `agent ${agentId} is unknown to this server`,
        suggestedAction: `start prfleet-agent on ${agentId}`,
      }),
    );
}

/** A warning when no known agent reports `site`. */
function unknownSiteWarnings(deps: FleetDeps, site: string): Finding[] {
  if (site === '' || deps.devices.list().some((a) => a.hello.site === site)) return [];
  return [
    Finding.fromPartial({
      kind: FindingKind.FINDING_KIND_UNREACHABLE,
      severity: Severity.SEVERITY_WARNING,
      message: `no agent reports site ${site}`,
      suggestedAction: suggest.agents(),
    }),
  ];
}

/** Warnings for a desired-state scope that names nothing yet: an unknown loader, or a group's unknown site. */
function unknownScopeWarnings(
  deps: FleetDeps,
  scope: { kind: 'loader' | 'group'; id: string },
  groupSite: string,
): Finding[] {
  if (scope.kind === 'group') return unknownSiteWarnings(deps, groupSite);
  const known = [...pathsByLu(deps.devices)].some(
    ([luId, paths]) => toLogicalUnit(luId, paths).loaderId === scope.id,
  );
  if (known) return [];
  return [
    Finding.fromPartial({
      kind: FindingKind.FINDING_KIND_UNREACHABLE,
      severity: Severity.SEVERITY_WARNING,
      loaderId: scope.id,
      message: `no agent reports loader ${scope.id}`,
      suggestedAction: suggest.devices(),
    }),
  ];
}

/** The stored JSON of a desired state (proto JSON). */
function desiredStateJson(state: DesiredState): JsonValue {
  return DesiredState.toJSON(state) as JsonValue;
}

/** Adds FleetService to a nice-grpc server (the lead wires this into createPrfleetServer). */
export function registerFleetService(
  server: Pick<Server, 'add'>,
  deps: FleetDeps,
  definitionOptions?: Parameters<typeof directServiceDefinition>[1],
): void {
  // Audit reports are complete messages: encode them without nice-grpc's fromPartial deep copy.
  server.add(
    directServiceDefinition(FleetServiceDefinition, definitionOptions),
    createFleetService(deps),
  );
}
