import { createHash } from 'node:crypto';
import { quoteSchema, type Db } from './db.js';
import { MigrationError } from './errors.js';

/** One schema step. Never edit a released migration: add the next one (the checksum catches edits). */
export interface Migration {
  /** Position, 1, 2, 3, … without gaps. */
  readonly version: number;
  /** Short name for people. */
  readonly name: string;
  /** PostgreSQL script, run once inside the migration transaction. */
  readonly sql: string;
}

const GENESIS_HASH = '0'.repeat(64);

/** The schema, in order. Runs unchanged on PostgreSQL and PGlite. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'key registry, desired state, operation journal, PROUT history',
    sql: `
CREATE TABLE key_sites (
  code        integer PRIMARY KEY CHECK (code BETWEEN 1 AND 65535),
  name        text NOT NULL UNIQUE CHECK (name <> ''),
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- An agent may hold several host ids in a site: it gets a fresh one when its 16 serials for a purpose are used.
CREATE TABLE key_hosts (
  site_code   integer NOT NULL REFERENCES key_sites (code),
  host_id     integer NOT NULL CHECK (host_id BETWEEN 1 AND 65535),
  agent_id    text NOT NULL CHECK (agent_id <> ''),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (site_code, host_id)
);
CREATE INDEX key_hosts_agent ON key_hosts (agent_id, site_code);

-- Every key ever handed out or adopted; rows are revoked, never deleted, so a key is never reused.
CREATE TABLE reservation_keys (
  key_hex       char(16) PRIMARY KEY CHECK (key_hex ~ '^[0-9a-f]{16}$'),
  origin        text NOT NULL CHECK (origin IN ('allocated', 'adopted')),
  site_code     integer,
  host_id       integer,
  purpose_code  smallint,
  serial        smallint,
  purpose       text NOT NULL,
  site          text,
  agent_id      text,
  owner         text NOT NULL CHECK (owner <> ''),
  note          text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz,
  revoked_by    text,
  revoke_reason text,
  UNIQUE (site_code, host_id, purpose_code, serial)
);
CREATE INDEX reservation_keys_agent ON reservation_keys (agent_id);

CREATE TABLE desired_state (
  scope_kind  text NOT NULL CHECK (scope_kind IN ('loader', 'group')),
  scope_id    text NOT NULL CHECK (scope_id <> ''),
  spec        jsonb NOT NULL,
  version     integer NOT NULL CHECK (version >= 1),
  updated_by  text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope_kind, scope_id)
);

CREATE TABLE operations (
  idempotency_key text PRIMARY KEY CHECK (idempotency_key <> ''),
  request_hash    char(64) NOT NULL,
  request         jsonb NOT NULL,
  state           text NOT NULL CHECK (state IN ('pending', 'done', 'unknown')),
  result          jsonb,
  command_id      text,
  owner           text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_pending ON operations (state, updated_at) WHERE state = 'pending';

CREATE TABLE history (
  seq                bigint PRIMARY KEY CHECK (seq >= 1),
  at                 timestamptz NOT NULL,
  actor              text NOT NULL,
  agent_id           text NOT NULL,
  path               text NOT NULL,
  lu_id              text NOT NULL,
  action             text NOT NULL,
  reservation_key    char(16) NOT NULL,
  service_action_key char(16) NOT NULL,
  pr_type            smallint,
  outcome            text NOT NULL,
  status             smallint,
  sense              text,
  command_id         text,
  idempotency_key    text,
  reason             text,
  prev_hash          char(64) NOT NULL UNIQUE,
  hash               char(64) NOT NULL UNIQUE
);
CREATE INDEX history_lu ON history (lu_id, seq);
CREATE INDEX history_agent ON history (agent_id, seq);

-- The chain's tip. Appenders lock this row, so servers append one at a time; it also exposes a truncated tail.
CREATE TABLE history_head (
  id    smallint PRIMARY KEY CHECK (id = 1),
  seq   bigint NOT NULL,
  hash  char(64) NOT NULL
);
INSERT INTO history_head (id, seq, hash) VALUES (1, 0, '${GENESIS_HASH}');

-- Append-only by default; the hash chain still catches anyone who disables this.
CREATE FUNCTION prfleet_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'history is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON history
  FOR EACH ROW EXECUTE FUNCTION prfleet_history_append_only();
`,
  },
  {
    version: 2,
    name: 'bearer tokens of ControlService and FleetService clients',
    sql: `
-- Bearer tokens (src/server/auth/tokens.ts): only sha256(salt || secret) is kept, never the secret. Rows are
-- revoked, never deleted, so a token id is never reused and a revoked token stays explainable.
CREATE TABLE auth_tokens (
  id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  name        text NOT NULL CHECK (name <> '' AND length(name) <= 64),
  role        text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
  salt        text NOT NULL CHECK (salt ~ '^[0-9a-f]{32}$'),
  hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz CHECK (expires_at IS NULL OR expires_at > created_at),
  revoked_at  timestamptz
);
CREATE INDEX auth_tokens_name ON auth_tokens (name);
`,
  },
  {
    version: 3,
    name: 'fleet events: the event log, its head, and the last observed state of each LU',
    sql: `
-- The fleet event log (src/server/events/, docs/events.md). seq is the watchers' cursor. It is taken from
-- fleet_events_head under that row's lock, held to COMMIT, so cursors become visible in order: a reader that
-- sees cursor n has seen every cursor below n, and resuming after n never misses a late commit.
CREATE TABLE fleet_events (
  seq       bigint PRIMARY KEY CHECK (seq >= 1),
  at        timestamptz NOT NULL DEFAULT now(),
  kind      text NOT NULL,
  lu_id     text NOT NULL DEFAULT '',
  agent_id  text NOT NULL DEFAULT '',
  body      jsonb NOT NULL
);
CREATE INDEX fleet_events_at ON fleet_events (at);

-- seq: the newest cursor; pruned_through: retention removed every event up to it.
CREATE TABLE fleet_events_head (
  id              smallint PRIMARY KEY CHECK (id = 1),
  seq             bigint NOT NULL,
  pruned_through  bigint NOT NULL
);
INSERT INTO fleet_events_head (id, seq, pruned_through) VALUES (1, 0, 0);

-- Each LU's PR state and standing findings as last observed: change events are emitted against it (a
-- compare-and-set, so instances observing the same change emit it once), and snapshots are read from it.
CREATE TABLE fleet_lu_observed (
  lu_id        text PRIMARY KEY,
  state        jsonb,
  findings     jsonb NOT NULL DEFAULT '[]',
  observed_at  timestamptz NOT NULL DEFAULT now()
);

-- Each agent's paths as last reported (path → LU id), so path events compare against the fleet's last word,
-- not against whatever this instance happens to remember (a restart or failover announces no path twice).
CREATE TABLE fleet_agent_paths (
  agent_id     text PRIMARY KEY,
  paths        jsonb NOT NULL,
  reported_at  timestamptz NOT NULL DEFAULT now()
);

-- Every PROUT history entry is an event, in the same transaction: none is recorded without its event.
CREATE FUNCTION prfleet_event_of_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  next_seq bigint;
BEGIN
  UPDATE fleet_events_head SET seq = seq + 1 WHERE id = 1 RETURNING seq INTO next_seq;
  INSERT INTO fleet_events (seq, at, kind, lu_id, agent_id, body)
  VALUES (
    next_seq, now(),
    CASE WHEN NEW.outcome LIKE 'RECONCILED%' THEN 'EVENT_KIND_PROUT_VERDICT' ELSE 'EVENT_KIND_PROUT' END,
    NEW.lu_id, NEW.agent_id,
    jsonb_build_object('history', to_jsonb(NEW) - 'prev_hash' - 'hash')
  );
  RETURN NULL;
END $$;
CREATE TRIGGER history_fleet_event AFTER INSERT ON history
  FOR EACH ROW EXECUTE FUNCTION prfleet_event_of_history();
`,
  },
  {
    version: 4,
    name: 'webhooks: subscriptions with a durable cursor and a delivery lease, and their dead letters',
    sql: `
-- Webhooks (src/server/webhooks/, docs/events.md). cursor: every event up to it was delivered, filtered out or
-- dead-lettered, so delivery resumes after it on any instance after a restart (at least once). The secret signs
-- deliveries and is never listed back (only its fingerprint). The lease says which instance delivers now: one
-- at a time per webhook, taken over when it expires (the holder died).
CREATE TABLE webhooks (
  id                  text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
  url                 text NOT NULL CHECK (url <> ''),
  filter              jsonb NOT NULL,
  secret              text NOT NULL CHECK (length(secret) >= 16),
  secret_fingerprint  text NOT NULL,
  description         text NOT NULL DEFAULT '',
  created_by          text NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  cursor              bigint NOT NULL CHECK (cursor >= 0),
  delivered           bigint NOT NULL DEFAULT 0,
  failed_attempts     bigint NOT NULL DEFAULT 0,
  dead_lettered       bigint NOT NULL DEFAULT 0,
  last_error          text NOT NULL DEFAULT '',
  last_delivered_at   timestamptz,
  -- The event being retried (the one after cursor): attempts so far and when the first was made, so the
  -- attempt and age limits hold across restarts.
  retry_cursor        bigint,
  retry_attempts      integer NOT NULL DEFAULT 0,
  retry_since         timestamptz,
  lease_owner         text,
  lease_until         timestamptz
);

CREATE TABLE webhook_dead_letters (
  webhook_id        text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  cursor            bigint NOT NULL,
  kind              text NOT NULL,
  attempts          integer NOT NULL,
  last_error        text NOT NULL,
  first_attempt_at  timestamptz NOT NULL,
  dead_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (webhook_id, cursor)
);
`,
  },
];

/** The hash every chain starts from. */
export { GENESIS_HASH };

/** sha256 of a migration's text, stored to catch edits of applied migrations. */
export function migrationChecksum(migration: Migration): string {
  return createHash('sha256').update(migration.sql).digest('hex');
}

/** Applied migrations as recorded in schema_migrations. */
export interface AppliedMigration {
  readonly version: number;
  readonly name: string;
  readonly checksum: string;
}

/**
 * Brings the schema to the newest version (creating `options.schema` when given): one transaction holding an advisory lock (so concurrent starts
 * wait for each other and each step runs once), creating `schema_migrations` when missing. Idempotent.
 * Throws MigrationError when an applied migration was edited or the database is newer than this code.
 * Returns the versions applied now.
 */
export async function migrate(
  db: Db,
  options: { readonly schema?: string; readonly migrations?: readonly Migration[] } = {},
): Promise<number[]> {
  const migrations = options.migrations ?? MIGRATIONS;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new MigrationError(
        `migration list broken: position ${i + 1} holds version ${m.version}`,
      );
  });
  if (await upToDate(db, migrations)) return [];
  return db.transaction(async (tx) => {
    // Transaction-scoped: released at COMMIT/ROLLBACK, even if this process dies.
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
      `prfleet.migrate:${options.schema ?? ''}`,
    ]);
    if (options.schema !== undefined)
      await tx.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteSchema(options.schema)}`);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version     integer PRIMARY KEY,
      name        text NOT NULL,
      checksum    char(64) NOT NULL,
      applied_at  timestamptz NOT NULL DEFAULT now()
    )`);
    const applied = await tx.query<AppliedMigration>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    for (const row of applied.rows) {
      const known = migrations[row.version - 1];
      if (!known) {
        throw new MigrationError(
          `database schema version ${row.version} (${row.name}) is newer than this prfleet, which knows up to ${migrations.length}`,
        );
      }
      if (migrationChecksum(known) !== row.checksum) {
        throw new MigrationError(
          `migration ${row.version} (${row.name}) was edited after it was applied: checksum differs`,
        );
      }
    }
    const done = new Set(applied.rows.map((r) => r.version));
    const now: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query(
        'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
        [m.version, m.name, migrationChecksum(m)],
      );
      now.push(m.version);
    }
    return now;
  });
}

// PostgreSQL's undefined_table and invalid_schema_name: no schema_migrations yet.
const NO_MIGRATIONS_TABLE = new Set(['42P01', '3F000']);

/**
 * True when schema_migrations holds exactly `migrations`, unedited: a start then costs one query, without the
 * transaction and its lock (five round trips more). Anything else (no table yet, a version missing, newer or
 * edited) takes the locked path, which applies or reports it.
 */
async function upToDate(db: Db, migrations: readonly Migration[]): Promise<boolean> {
  let applied: AppliedMigration[];
  try {
    applied = (
      await db.query<AppliedMigration>(
        'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
      )
    ).rows;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && NO_MIGRATIONS_TABLE.has(code)) return false;
    throw error;
  }
  return (
    applied.length === migrations.length &&
    applied.every(
      (row, i) => row.version === i + 1 && row.checksum === migrationChecksum(migrations[i]!),
    )
  );
}

/** The newest applied schema version (0 before any migration). */
export async function schemaVersion(db: Db): Promise<number> {
  const r = await db.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  return r.rows[0]?.v ?? 0;
}
