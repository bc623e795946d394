import {
  KEY_PURPOSES,
  MAX_HOST_ID,
  MAX_SERIAL,
  MAX_SITE_CODE,
  decodeKeyLayout,
  encodeKey,
  formatKey,
  keyToHex,
} from '../../common/key-layout.js';
import type { Db } from './db.js';
import { KeySpaceExhaustedError, StoreInputError } from './errors.js';
import type { AdoptKeyRequest, AllocateKeyRequest, KeyRecord } from './key-registry.js';
import {
  KEY_COLUMNS,
  requireKey,
  requirePurpose,
  requireText,
  toRecord,
  type KeyRow,
} from './key-rows.js';

// Lowest free id in 1..max, or NULL when all are taken. The gap search finds ids freed by deleted rows too.
const FREE_SITE_CODE_SQL = `SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM key_sites WHERE code = 1) THEN 1
  ELSE (SELECT min(a.code) + 1 FROM key_sites a
        WHERE a.code < ${MAX_SITE_CODE} AND NOT EXISTS (SELECT 1 FROM key_sites b WHERE b.code = a.code + 1))
END AS free`;
const FREE_HOST_ID_SQL = `SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM key_hosts WHERE site_code = $1 AND host_id = 1) THEN 1
  ELSE (SELECT min(a.host_id) + 1 FROM key_hosts a
        WHERE a.site_code = $1 AND a.host_id < ${MAX_HOST_ID}
          AND NOT EXISTS (SELECT 1 FROM key_hosts b WHERE b.site_code = $1 AND b.host_id = a.host_id + 1))
END AS free`;

const ALLOCATION_LOCK = 'prfleet.keys.allocate';

/** See KeyRegistry.allocate. */
export async function allocateKey(db: Db, request: AllocateKeyRequest): Promise<KeyRecord> {
  const site = requireText('site', request.site);
  const agentId = requireText('agentId', request.agentId);
  const purpose = requirePurpose(request.purpose);
  const owner = requireText('owner', request.owner);
  const note = request.note === undefined ? null : requireText('note', request.note, 2000);
  const purposeCode = KEY_PURPOSES[purpose];
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ALLOCATION_LOCK]);
    const code = await siteCode(tx, site);
    const hosts = await tx.query<{ host_id: number }>(
      'SELECT host_id FROM key_hosts WHERE site_code = $1 AND agent_id = $2 ORDER BY host_id',
      [code, agentId],
    );
    // Try the agent's host ids in order; when every serial of this purpose is used, give it a fresh one.
    const hostIds = hosts.rows.map((r) => r.host_id);
    for (let i = 0; ; i++) {
      const hostId = hostIds[i] ?? (await newHostId(tx, code, site, agentId));
      for (const serial of await freeSerials(tx, code, hostId, purposeCode)) {
        const key = encodeKey({ siteCode: code, hostId, purpose, serial });
        // ON CONFLICT: the unique key refuses a collision the serial search missed (a row written outside
        // this code); the next serial is tried instead.
        const inserted = await tx.query<KeyRow>(
          `INSERT INTO reservation_keys
             (key_hex, origin, site_code, host_id, purpose_code, serial, purpose, site, agent_id, owner, note)
           VALUES ($1, 'allocated', $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT DO NOTHING
           RETURNING ${KEY_COLUMNS}`,
          [keyToHex(key), code, hostId, purposeCode, serial, purpose, site, agentId, owner, note],
        );
        if (inserted.rows[0]) return toRecord(inserted.rows[0]);
      }
    }
  });
}

/** See KeyRegistry.adopt. */
export async function adoptKey(db: Db, request: AdoptKeyRequest): Promise<KeyRecord> {
  const key = requireKey(request.key);
  if (key === 0n)
    throw new StoreInputError(
      'key',
      'invalid key: 0x0000000000000000 means "no key" and cannot be owned',
    );
  const purpose = requirePurpose(request.purpose);
  const owner = requireText('owner', request.owner);
  const agentId = request.agentId === undefined ? null : requireText('agentId', request.agentId);
  const site = request.site === undefined ? null : requireText('site', request.site);
  const note = request.note === undefined ? null : requireText('note', request.note, 2000);
  const decoded = decodeKeyLayout(key);
  // A prfleet-layout key keeps its numbers, so allocation skips its serial and cannot reissue it.
  const l = decoded.ok ? decoded.layout : undefined;
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [ALLOCATION_LOCK]);
    const inserted = await tx.query<KeyRow>(
      `INSERT INTO reservation_keys
         (key_hex, origin, site_code, host_id, purpose_code, serial, purpose, site, agent_id, owner, note)
       VALUES ($1, 'adopted', $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT DO NOTHING
       RETURNING ${KEY_COLUMNS}`,
      [
        keyToHex(key),
        l?.siteCode ?? null,
        l?.hostId ?? null,
        l?.purposeCode ?? null,
        l?.serial ?? null,
        purpose,
        site,
        agentId,
        owner,
        note,
      ],
    );
    if (!inserted.rows[0])
      throw new StoreInputError('key', `invalid key: ${formatKey(key)} is already in the registry`);
    return toRecord(inserted.rows[0]);
  });
}

/** The code of site `name`, assigning the lowest free one on first use. */
async function siteCode(tx: Db, name: string): Promise<number> {
  const found = await tx.query<{ code: number }>('SELECT code FROM key_sites WHERE name = $1', [
    name,
  ]);
  if (found.rows[0]) return found.rows[0].code;
  const free = await tx.query<{ free: number | null }>(FREE_SITE_CODE_SQL);
  const code = free.rows[0]?.free ?? null;
  if (code === null) {
    throw new KeySpaceExhaustedError(
      `no site code left: all ${MAX_SITE_CODE} site codes are assigned; site ${JSON.stringify(name)} cannot be added`,
    );
  }
  await tx.query('INSERT INTO key_sites (code, name) VALUES ($1, $2)', [code, name]);
  return code;
}

/** Gives `agentId` the lowest free host id in `site`. */
async function newHostId(tx: Db, site: number, siteName: string, agentId: string): Promise<number> {
  const free = await tx.query<{ free: number | null }>(FREE_HOST_ID_SQL, [site]);
  const hostId = free.rows[0]?.free ?? null;
  if (hostId === null) {
    throw new KeySpaceExhaustedError(
      `no host id left in site ${JSON.stringify(siteName)} (code ${site}): all ${MAX_HOST_ID} are assigned; put agent ${JSON.stringify(agentId)} in another site`,
    );
  }
  await tx.query('INSERT INTO key_hosts (site_code, host_id, agent_id) VALUES ($1, $2, $3)', [
    site,
    hostId,
    agentId,
  ]);
  return hostId;
}

/** Serials of (site, host, purpose) no key uses, lowest first. */
async function freeSerials(
  tx: Db,
  site: number,
  hostId: number,
  purposeCode: number,
): Promise<number[]> {
  const r = await tx.query<{ serial: number }>(
    `SELECT s AS serial FROM generate_series(0, ${MAX_SERIAL}) AS s
     WHERE NOT EXISTS (SELECT 1 FROM reservation_keys k
                       WHERE k.site_code = $1 AND k.host_id = $2 AND k.purpose_code = $3 AND k.serial = s)
     ORDER BY s`,
    [site, hostId, purposeCode],
  );
  return r.rows.map((row) => row.serial);
}
