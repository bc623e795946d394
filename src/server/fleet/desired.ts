import {
  DesiredScope as ProtoDesiredScope,
  DesiredState,
  DesiredStateRecord as ProtoDesiredStateRecord,
} from '../../gen/prfleet/v1/fleet.js';
import { PrType } from '../../gen/prfleet/v1/scsi.js';
import { invalidArgument } from '../../common/errors.js';
import { KEY_PURPOSE_NAMES, type KeyPurpose } from '../../common/key-layout.js';
import type { DesiredScope, DesiredStateRecord } from '../store/index.js';
import type { FleetStore } from './deps.js';
import type { UnitDesire } from './planner.js';
import { durationToMs } from '../../common/command.js';
import type { Duration } from '../../gen/google/protobuf/duration.js';
import { agentMatches, isChanger, parseLabels, type SelectedUnit } from './selection.js';

const VALID_TYPES = new Set<number>([
  PrType.PR_TYPE_WRITE_EXCLUSIVE,
  PrType.PR_TYPE_EXCLUSIVE_ACCESS,
  PrType.PR_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
  PrType.PR_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
  PrType.PR_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS,
  PrType.PR_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
]);

/** The store's scope of a proto scope; INVALID_ARGUMENT naming `field` when empty. */
export function toStoreScope(scope: ProtoDesiredScope | undefined, field: string): DesiredScope {
  const s = scope?.scope;
  switch (s?.$case) {
    case 'loaderId':
      if (s.value === '') throw invalidArgument(`${field}.loader_id`, 'must not be empty');
      return { kind: 'loader', id: s.value };
    case 'group':
      if (s.value === '') throw invalidArgument(`${field}.group`, 'must not be empty');
      return { kind: 'group', id: s.value };
    case undefined:
      throw invalidArgument(field, 'set loader_id or group');
  }
}

/** The proto scope of a store scope. */
export function toProtoScope(scope: DesiredScope): ProtoDesiredScope {
  return ProtoDesiredScope.fromPartial({
    scope:
      scope.kind === 'loader'
        ? { $case: 'loaderId', value: scope.id }
        : { $case: 'group', value: scope.id },
  });
}

/** Checks a desired state; INVALID_ARGUMENT naming the field at fault. Returns it with defaults filled in. */
export function validateDesiredState(
  state: DesiredState | undefined,
  scope: DesiredScope,
): DesiredState {
  if (state === undefined) throw invalidArgument('state', 'required');
  state.registeredAgentIds.forEach((id, i) => {
    if (id.trim() === '')
      throw invalidArgument(`state.registered_agent_ids[${i}]`, 'must not be empty');
  });
  for (const [name, r] of [
    ['changer', state.changer],
    ['drives', state.drives],
  ] as const) {
    if (r?.lease !== undefined && r.holderAgentId === '')
      throw invalidArgument(`state.${name}.lease`, 'a lease needs a holder_agent_id');
    if (r === undefined || r.holderAgentId === '') continue;
    if (!VALID_TYPES.has(r.type))
      throw invalidArgument(
        `state.${name}.type`,
        `${r.type} is not a reservation type (set one with a holder)`,
      );
  }
  if (state.keyPurpose !== '' && !(KEY_PURPOSE_NAMES as string[]).includes(state.keyPurpose)) {
    throw invalidArgument(
      'state.key_purpose',
      `"${state.keyPurpose}" is not one of ${KEY_PURPOSE_NAMES.join(', ')}`,
    );
  }
  parseLabels(state.groupLabels, 'state.group_labels');
  if (scope.kind === 'loader' && (state.groupSite !== '' || state.groupLabels.length > 0)) {
    throw invalidArgument('state.group_site', 'only a group scope has a selector');
  }
  return DesiredState.fromPartial({ ...state, keyPurpose: state.keyPurpose || 'backup' });
}

/** A lease from the desired state (ms), or undefined for none. */
export function leaseMsOf(lease: Duration | undefined): number | undefined {
  if (lease === undefined) return undefined;
  const ms = durationToMs(lease);
  return ms > 0 ? ms : undefined;
}

function leaseOf(lease: Duration | undefined): { leaseMs?: number } {
  const ms = leaseMsOf(lease);
  return ms === undefined ? {} : { leaseMs: ms };
}

/** A stored record as proto (the spec is the proto JSON of DesiredState). */
export function recordToProto(r: DesiredStateRecord): ProtoDesiredStateRecord {
  return ProtoDesiredStateRecord.fromPartial({
    scope: toProtoScope(r.scope),
    state: DesiredState.fromJSON(r.spec),
    version: r.version,
    updatedBy: r.updatedBy,
    updatedAt: r.updatedAt,
  });
}

/** Every desired state, loaded once per operation. */
export interface DesiredIndex {
  /** What the desired state asks of `unit`, or undefined when no loader or group state covers it. */
  desireFor(unit: SelectedUnit): UnitDesire | undefined;
  /** Number of desired states loaded. */
  readonly size: number;
}

/** Loads every desired state. A loader's own state wins over a group's; among groups, the first by name. */
export async function loadDesiredIndex(store: FleetStore): Promise<DesiredIndex> {
  const records = await store.desired.list();
  const loaders = new Map<string, DesiredState>();
  const groups: { name: string; state: DesiredState; labels: [string, string][] }[] = [];
  for (const r of records) {
    const state = DesiredState.fromJSON(r.spec);
    if (r.scope.kind === 'loader') loaders.set(r.scope.id, state);
    else {
      let labels: [string, string][] = [];
      try {
        labels = parseLabels(state.groupLabels, 'group_labels');
      } catch {
        continue; // validated on the way in; a hand-edited row is skipped rather than failing every audit
      }
      groups.push({ name: r.scope.id, state, labels });
    }
  }
  return {
    size: records.length,
    desireFor(unit) {
      if (records.length === 0) return undefined;
      let source: string;
      let state = unit.loaderId === '' ? undefined : loaders.get(unit.loaderId);
      if (state !== undefined) source = `loader/${unit.loaderId}`;
      else {
        const group = groups.find((g) =>
          unit.paths.some((p) => agentMatches(p.agent, g.state.groupSite, g.labels)),
        );
        if (group === undefined) return undefined;
        state = group.state;
        source = `group/${group.name}`;
      }
      const r = isChanger(unit) ? state.changer : state.drives;
      const registered = new Set(state.registeredAgentIds);
      if (r !== undefined && r.holderAgentId !== '') registered.add(r.holderAgentId);
      return {
        source,
        registered: [...registered],
        ...(r === undefined
          ? {}
          : {
              reservation: {
                holder: r.holderAgentId,
                type: r.type,
                ...leaseOf(r.lease),
              },
            }),
        purpose: (state.keyPurpose || 'backup') as KeyPurpose,
        removeOthers: state.removeOthers,
      };
    },
  };
}
