import {
  type ChangeCause,
  EventKind,
  FindingEvent,
  type PrState,
} from '../../gen/prfleet/v1/events.js';
import { formatKey } from '../../common/key-layout.js';
import { prTypeName } from '../../scsi/constants.js';
import type { NewFleetEvent } from './types.js';

const sameKeys = (a: readonly bigint[], b: readonly bigint[]) =>
  a.length === b.length && a.every((k, i) => k === b[i]);

/** "0x…aaaa (host-a) WE", or "none". */
function reservationText(s: PrState, ownerOf: (key: bigint) => string): string {
  if (!s.reserved) return 'none';
  const owner =
    s.holderKey === 0n
      ? 'all registrants'
      : `${formatKey(s.holderKey)}${ownerOf(s.holderKey) ? ` (${ownerOf(s.holderKey)})` : ''}`;
  return `${owner} ${prTypeName(s.type)}`;
}

/** What a change event needs besides the two states. */
export interface ChangeContext {
  readonly luId: string;
  readonly loaderId: string;
  readonly cause: ChangeCause;
  /** Who made the server look ("observation", or the agent that met the unit attention). */
  readonly actor: string;
  /** The agent whose key is `key`, or ''. */
  readonly ownerOf: (key: bigint) => string;
}

/** RESERVATION_CHANGED and/or REGISTRATIONS_CHANGED between two states (none when they agree). */
export function prChangeEvents(
  before: PrState,
  after: PrState,
  context: ChangeContext,
): NewFleetEvent[] {
  const out: NewFleetEvent[] = [];
  const holderAgentId = after.reserved ? context.ownerOf(after.holderKey) : '';
  const base = {
    luId: context.luId,
    loaderId: context.loaderId,
    actor: context.actor,
  };
  const detail = (extra: { keysAdded?: bigint[]; keysRemoved?: bigint[] }) => ({
    $case: 'prChange' as const,
    value: {
      cause: context.cause,
      before,
      after,
      keysAdded: extra.keysAdded ?? [],
      keysRemoved: extra.keysRemoved ?? [],
      holderAgentId,
    },
  });
  if (
    before.reserved !== after.reserved ||
    before.holderKey !== after.holderKey ||
    before.type !== after.type
  ) {
    out.push({
      ...base,
      kind: EventKind.EVENT_KIND_RESERVATION_CHANGED,
      summary: `reservation ${reservationText(before, context.ownerOf)} → ${reservationText(after, context.ownerOf)}`,
      detail: detail({}),
    });
  }
  if (!sameKeys(before.keys, after.keys)) {
    const count = (keys: readonly bigint[]) => {
      const m = new Map<bigint, number>();
      for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
      return m;
    };
    const b = count(before.keys);
    const a = count(after.keys);
    const keysAdded = [...a].filter(([k, n]) => n > (b.get(k) ?? 0)).map(([k]) => k);
    const keysRemoved = [...b].filter(([k, n]) => n > (a.get(k) ?? 0)).map(([k]) => k);
    const named = (keys: bigint[]) =>
      keys
        .map((k) => `${formatKey(k)}${context.ownerOf(k) ? ` (${context.ownerOf(k)})` : ''}`)
        .join(', ');
    const parts = [
      keysAdded.length > 0 ? `registered ${named(keysAdded)}` : '',
      keysRemoved.length > 0 ? `gone ${named(keysRemoved)}` : '',
    ].filter((p) => p !== '');
    out.push({
      ...base,
      kind: EventKind.EVENT_KIND_REGISTRATIONS_CHANGED,
      summary: `registrations ${parts.join('; ') || 'changed'} (PRgeneration ${before.generation} → ${after.generation})`,
      detail: detail({ keysAdded, keysRemoved }),
    });
  }
  return out;
}

/**
 * A finding's identity across observations and audits: the same kind on the same LU, key, agent and path. Its
 * wording and severity may change (a key that starts holding the reservation) without raising it again.
 */
export function findingId(f: FindingEvent, luId: string): string {
  return `${f.findingKind}|${luId}|${f.key.toString(16)}|${f.agentId}|${f.path}`;
}

/** FINDING_RAISED for findings new in `after`, FINDING_CLEARED for findings of `before` gone from it. */
export function findingEvents(
  before: readonly FindingEvent[],
  after: readonly FindingEvent[],
  context: { readonly luId: string; readonly loaderId: string; readonly actor: string },
): NewFleetEvent[] {
  const ids = (list: readonly FindingEvent[]) =>
    new Set(list.map((f) => findingId(f, context.luId)));
  const had = ids(before);
  const has = ids(after);
  const event = (kind: EventKind, f: FindingEvent, verb: string): NewFleetEvent => ({
    kind,
    luId: context.luId.startsWith('loader:') ? '' : context.luId,
    loaderId: context.loaderId,
    agentId: f.agentId,
    path: f.path,
    actor: context.actor,
    summary: `${verb} ${f.findingKind.replace(/^FINDING_KIND_/, '').toLowerCase()} (${f.severity.replace(/^SEVERITY_/, '').toLowerCase()}): ${f.message}`,
    detail: { $case: 'finding', value: FindingEvent.fromPartial(f) },
  });
  return [
    ...after
      .filter((f) => !had.has(findingId(f, context.luId)))
      .map((f) => event(EventKind.EVENT_KIND_FINDING_RAISED, f, 'raised')),
    ...before
      .filter((f) => !has.has(findingId(f, context.luId)))
      .map((f) => event(EventKind.EVENT_KIND_FINDING_CLEARED, f, 'cleared')),
  ];
}
