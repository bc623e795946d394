import { formatKey, keyToHex, readForeignKey, type KeyPurpose } from '../../common/key-layout.js';
import type { Db } from './db.js';
import { NotFoundError } from './errors.js';
import type { KeyReading, KeyRecord, ListKeysFilter, SiteRecord } from './key-registry.js';
import {
  KEY_COLUMNS,
  requireKey,
  requirePurpose,
  requireText,
  toRecord,
  type KeyRow,
} from './key-rows.js';

/** See KeyRegistry.get. */
export async function getKey(db: Db, key: bigint): Promise<KeyRecord | undefined> {
  const r = await db.query<KeyRow>(
    `SELECT ${KEY_COLUMNS} FROM reservation_keys WHERE key_hex = $1`,
    [keyToHex(requireKey(key))],
  );
  return r.rows[0] ? toRecord(r.rows[0]) : undefined;
}

/** See KeyRegistry.list. */
export async function listKeys(db: Db, filter: ListKeysFilter = {}): Promise<KeyRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (clause: string, value: unknown) => {
    params.push(value);
    where.push(clause.replace('?', `$${params.length}`));
  };
  if (filter.agentId !== undefined) add('agent_id = ?', filter.agentId);
  if (filter.site !== undefined) add('site = ?', filter.site);
  if (filter.purpose !== undefined) add('purpose = ?', requirePurpose(filter.purpose));
  if (!filter.includeRevoked) where.push('revoked_at IS NULL');
  const r = await db.query<KeyRow>(
    `SELECT ${KEY_COLUMNS} FROM reservation_keys ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, key_hex`,
    params,
  );
  return r.rows.map(toRecord);
}

/** See KeyRegistry.findActive. */
export async function findActiveKey(
  db: Db,
  agentId: string,
  purpose: KeyPurpose,
): Promise<KeyRecord | undefined> {
  const r = await db.query<KeyRow>(
    `SELECT ${KEY_COLUMNS} FROM reservation_keys WHERE agent_id = $1 AND purpose = $2 AND revoked_at IS NULL
     ORDER BY created_at DESC, key_hex DESC LIMIT 1`,
    [agentId, requirePurpose(purpose)],
  );
  return r.rows[0] ? toRecord(r.rows[0]) : undefined;
}

/** See KeyRegistry.revoke. */
export async function revokeKey(
  db: Db,
  key: bigint,
  options: { readonly by: string; readonly reason?: string },
): Promise<KeyRecord> {
  const by = requireText('by', options.by);
  const reason = options.reason === undefined ? null : requireText('reason', options.reason, 2000);
  const hex = keyToHex(requireKey(key));
  const updated = await db.query<KeyRow>(
    `UPDATE reservation_keys SET revoked_at = now(), revoked_by = $2, revoke_reason = $3
     WHERE key_hex = $1 AND revoked_at IS NULL RETURNING ${KEY_COLUMNS}`,
    [hex, by, reason],
  );
  if (updated.rows[0]) return toRecord(updated.rows[0]);
  const existing = await getKey(db, key);
  if (!existing) throw new NotFoundError(`unknown key: ${formatKey(key)} is not in the registry`);
  return existing;
}

/** See KeyRegistry.sites. */
export async function listSites(db: Db): Promise<SiteRecord[]> {
  const r = await db.query<{ name: string; code: number }>(
    'SELECT name, code FROM key_sites ORDER BY code',
  );
  return r.rows.map((row) => ({ name: row.name, code: row.code }));
}

/** See KeyRegistry.decodeKey. */
export async function decodeKey(db: Db, key: bigint): Promise<KeyReading> {
  const record = await getKey(db, key);
  const formatted = formatKey(key);
  if (record) {
    const state = record.revokedAt ? `revoked ${record.revokedAt.toISOString()}` : 'valid';
    return {
      kind: 'registry',
      key,
      formatted,
      record,
      summary: `${record.purpose} key of ${record.agentId ?? 'unknown agent'}${record.site ? ` at ${record.site}` : ''}, owner ${record.owner}, ${record.origin}, ${state}`,
    };
  }
  return { ...readForeignKey(key), key, formatted };
}
