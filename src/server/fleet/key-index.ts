import { KeyOwner, KeyRecord as ProtoKeyRecord, KeyStatus } from '../../gen/prfleet/v1/fleet.js';
import { readForeignKey, type KeyPurpose } from '../../common/key-layout.js';
import type { KeyRecord } from '../store/index.js';
import type { FleetStore } from './deps.js';

/** The key registry loaded once per operation, so an audit of 10,000 LUs asks the database once, not per key. */
export interface KeyIndex {
  /** The record of `key`, if the registry has one. */
  record(key: bigint): KeyRecord | undefined;
  /** Who owns `key`: the registry's record, else a reading of a foreign layout. */
  owner(key: bigint): KeyOwner;
  /** The newest valid key of (agent, purpose), as KeyRegistry.findActive would answer. */
  activeKey(agentId: string, purpose: KeyPurpose): bigint | undefined;
  /** Every key (valid or revoked) issued to `agentId`. */
  keysOf(agentId: string): readonly bigint[];
}

/** Loads every key (revoked included) from the registry and indexes it. */
export async function loadKeyIndex(store: FleetStore): Promise<KeyIndex> {
  return buildKeyIndex(await store.keys.list({ includeRevoked: true }));
}

/** Indexes `records` (oldest first, as KeyRegistry.list returns them). */
export function buildKeyIndex(records: readonly KeyRecord[]): KeyIndex {
  const byKey = new Map<bigint, KeyRecord>();
  const byAgent = new Map<string, KeyRecord[]>();
  for (const r of records) {
    byKey.set(r.key, r);
    if (r.agentId === null) continue;
    let list = byAgent.get(r.agentId);
    if (list === undefined) byAgent.set(r.agentId, (list = []));
    list.push(r);
  }
  const owners = new Map<bigint, KeyOwner>();
  return {
    record: (key) => byKey.get(key),
    owner(key) {
      let owner = owners.get(key);
      if (owner === undefined) {
        const r = byKey.get(key);
        owner = r === undefined ? foreignOwner(key) : ownerOfRecord(r);
        owners.set(key, owner);
      }
      return owner;
    },
    activeKey(agentId, purpose) {
      const list = byAgent.get(agentId) ?? [];
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i] as KeyRecord;
        if (r.revokedAt === null && r.purpose === purpose) return r.key;
      }
      return undefined;
    },
    keysOf: (agentId) => (byAgent.get(agentId) ?? []).map((r) => r.key),
  };
}

/** KeyOwner of a registry record. */
export function ownerOfRecord(r: KeyRecord): KeyOwner {
  const state = r.revokedAt === null ? 'valid' : `revoked ${r.revokedAt.toISOString()}`;
  return KeyOwner.fromPartial({
    status: r.revokedAt === null ? KeyStatus.KEY_STATUS_VALID : KeyStatus.KEY_STATUS_REVOKED,
    agentId: r.agentId ?? '',
    site: r.site ?? '',
    owner: r.owner,
    purpose: r.purpose,
    summary: `${r.purpose} key of ${r.agentId ?? 'unknown agent'}${r.site ? ` at ${r.site}` : ''}, owner ${r.owner}, ${state}`,
  });
}

/** KeyOwner of a key the registry does not know: status UNKNOWN and the best reading of its layout. */
export function foreignOwner(key: bigint): KeyOwner {
  return KeyOwner.fromPartial({
    status: KeyStatus.KEY_STATUS_UNKNOWN,
    summary: readForeignKey(key).summary,
  });
}

/** A registry record as the proto KeyRecord. */
export function keyRecordToProto(r: KeyRecord): ProtoKeyRecord {
  return ProtoKeyRecord.fromPartial({
    key: r.key,
    origin: r.origin,
    purpose: r.purpose,
    site: r.site ?? '',
    agentId: r.agentId ?? '',
    owner: r.owner,
    note: r.note ?? '',
    createdAt: r.createdAt,
    ...(r.revokedAt === null ? {} : { revokedAt: r.revokedAt }),
    revokedBy: r.revokedBy ?? '',
    revokeReason: r.revokeReason ?? '',
  });
}
