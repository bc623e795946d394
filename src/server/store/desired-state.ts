import { canonicalJson, type JsonValue } from './canonical-json.js';
import type { Db } from './db.js';
import { NotFoundError, StoreInputError, VersionConflictError } from './errors.js';

/** What a desired state is about: one loader, or a named group of loaders/LUs. */
export interface DesiredScope {
  /** `loader` or `group`. */
  readonly kind: 'loader' | 'group';
  /** Loader id or group name. */
  readonly id: string;
}

/** A stored desired state. */
export interface DesiredStateRecord {
  /** What it is about. */
  readonly scope: DesiredScope;
  /** The specification (its shape belongs to the plan/apply issue). */
  readonly spec: JsonValue;
  /** Raised by one on every change; the compare-and-set token. */
  readonly version: number;
  /** Who changed it last. */
  readonly updatedBy: string;
  /** When. */
  readonly updatedAt: Date;
}

/** Desired state per loader or group, with optimistic concurrency. */
export interface DesiredStateStore {
  /** The state of `scope`, or undefined. */
  get(scope: DesiredScope): Promise<DesiredStateRecord | undefined>;
  /** Every state, optionally of one kind, sorted by kind and id. */
  list(kind?: DesiredScope['kind']): Promise<DesiredStateRecord[]>;
  /**
   * Creates or replaces the state. With `expectedVersion`, only if the stored version is that (0: only if
   * absent); otherwise VersionConflictError and nothing changes.
   */
  put(
    scope: DesiredScope,
    spec: JsonValue,
    options: { readonly actor: string; readonly expectedVersion?: number },
  ): Promise<DesiredStateRecord>;
  /** Deletes the state (same `expectedVersion` rule). Throws NotFoundError when absent. */
  remove(scope: DesiredScope, options?: { readonly expectedVersion?: number }): Promise<void>;
}

interface DesiredRow {
  scope_kind: 'loader' | 'group';
  scope_id: string;
  spec: JsonValue;
  version: number;
  updated_by: string;
  updated_at: Date;
}

const COLUMNS = 'scope_kind, scope_id, spec, version, updated_by, updated_at';

function toRecord(row: DesiredRow): DesiredStateRecord {
  return {
    scope: { kind: row.scope_kind, id: row.scope_id },
    spec: row.spec,
    version: row.version,
    updatedBy: row.updated_by,
    updatedAt: row.updated_at,
  };
}

function checkScope(scope: DesiredScope): DesiredScope {
  if (scope.kind !== 'loader' && scope.kind !== 'group') {
    throw new StoreInputError(
      'scope.kind',
      `invalid scope.kind: ${JSON.stringify(scope.kind)} is not loader or group`,
    );
  }
  if (typeof scope.id !== 'string' || scope.id === '' || scope.id.length > 200) {
    throw new StoreInputError(
      'scope.id',
      `invalid scope.id: ${JSON.stringify(scope.id)} must be 1–200 characters`,
    );
  }
  return scope;
}

function checkVersion(version: number | undefined): number | undefined {
  if (version !== undefined && (!Number.isInteger(version) || version < 0)) {
    throw new StoreInputError(
      'expectedVersion',
      `invalid expectedVersion: ${version} is not a non-negative integer`,
    );
  }
  return version;
}

/** Builds the desired-state sub-API over `db`. */
export function createDesiredStateStore(db: Db): DesiredStateStore {
  const store: DesiredStateStore = {
    async get(scope) {
      checkScope(scope);
      const r = await db.query<DesiredRow>(
        `SELECT ${COLUMNS} FROM desired_state WHERE scope_kind = $1 AND scope_id = $2`,
        [scope.kind, scope.id],
      );
      return r.rows[0] ? toRecord(r.rows[0]) : undefined;
    },
    async list(kind) {
      const r = await db.query<DesiredRow>(
        `SELECT ${COLUMNS} FROM desired_state WHERE $1::text IS NULL OR scope_kind = $1 ORDER BY scope_kind, scope_id`,
        [kind ?? null],
      );
      return r.rows.map(toRecord);
    },
    async put(scope, spec, options) {
      checkScope(scope);
      const expected = checkVersion(options.expectedVersion);
      if (typeof options.actor !== 'string' || options.actor === '') {
        throw new StoreInputError(
          'actor',
          `invalid actor: ${JSON.stringify(options.actor)} must be non-empty`,
        );
      }
      const json = canonicalJson(spec, 'spec');
      // One statement either way, so two writers with the same expectedVersion cannot both win.
      const r =
        expected === 0
          ? await db.query<DesiredRow>(
              `INSERT INTO desired_state (scope_kind, scope_id, spec, version, updated_by)
               VALUES ($1, $2, $3::text::jsonb, 1, $4) ON CONFLICT DO NOTHING RETURNING ${COLUMNS}`,
              [scope.kind, scope.id, json, options.actor],
            )
          : expected === undefined
            ? await db.query<DesiredRow>(
                `INSERT INTO desired_state (scope_kind, scope_id, spec, version, updated_by)
                 VALUES ($1, $2, $3::text::jsonb, 1, $4)
                 ON CONFLICT (scope_kind, scope_id) DO UPDATE
                   SET spec = EXCLUDED.spec, version = desired_state.version + 1,
                       updated_by = EXCLUDED.updated_by, updated_at = now()
                 RETURNING ${COLUMNS}`,
                [scope.kind, scope.id, json, options.actor],
              )
            : await db.query<DesiredRow>(
                `UPDATE desired_state SET spec = $3::text::jsonb, version = version + 1, updated_by = $4, updated_at = now()
                 WHERE scope_kind = $1 AND scope_id = $2 AND version = $5 RETURNING ${COLUMNS}`,
                [scope.kind, scope.id, json, options.actor, expected],
              );
      if (r.rows[0]) return toRecord(r.rows[0]);
      const current = await store.get(scope);
      throw new VersionConflictError(
        `desired state ${scope.kind}/${scope.id} is at version ${current?.version ?? 0}, not ${expected}: re-read and retry`,
      );
    },
    async remove(scope, options = {}) {
      checkScope(scope);
      const expected = checkVersion(options.expectedVersion);
      const r = await db.query(
        `DELETE FROM desired_state WHERE scope_kind = $1 AND scope_id = $2 AND ($3::int IS NULL OR version = $3)`,
        [scope.kind, scope.id, expected ?? null],
      );
      if (r.rowCount === 1) return;
      const current = await store.get(scope);
      if (!current)
        throw new NotFoundError(`desired state ${scope.kind}/${scope.id} does not exist`);
      throw new VersionConflictError(
        `desired state ${scope.kind}/${scope.id} is at version ${current.version}, not ${expected}: re-read and retry`,
      );
    },
  };
  return store;
}
