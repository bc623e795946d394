import type { ControlServiceDefinition } from '../../gen/prfleet/v1/control.js';
import { type CommandSessionRequest } from '../../gen/prfleet/v1/control.js';
import type { FleetServiceDefinition } from '../../gen/prfleet/v1/fleet.js';

/** What a principal may do: viewer reads and audits, operator also registers/reserves/releases, admin all. */
export type Role = 'viewer' | 'operator' | 'admin';

/** Every role, weakest first. */
export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

/** True when `held` includes everything `needed` allows (roles are ordered: admin ⊃ operator ⊃ viewer). */
export function roleSatisfies(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

/** Parses a role name; throws `invalid role: "x" (expected viewer, operator or admin)`. */
export function parseRole(value: string): Role {
  if ((ROLES as readonly string[]).includes(value)) return value as Role;
  throw new Error(`invalid role: ${JSON.stringify(value)} (expected viewer, operator or admin)`);
}

/** A ControlService method name as the proto spells it (`ReadKeys`, `Preempt`, …). */
export type ControlMethodName =
  (typeof ControlServiceDefinition.methods)[keyof typeof ControlServiceDefinition.methods]['name'];

/**
 * The one table of who may call what on ControlService. CommandSession needs only viewer to open; each
 * command inside it is checked with {@link requiredRole}. A method missing here (added to the proto later)
 * is refused to all but admin by {@link roleForMethod} (fail closed), and test/auth flags the gap.
 */
export const CONTROL_METHOD_ROLES: Readonly<Partial<Record<ControlMethodName, Role>>> = {
  ListAgents: 'viewer',
  ListDevices: 'viewer',
  ListHistory: 'viewer',
  VerifyHistory: 'viewer',
  GetDevice: 'viewer',
  ReadKeys: 'viewer',
  ReadReservation: 'viewer',
  ReportCapabilities: 'viewer',
  ReadFullStatus: 'viewer',
  Register: 'operator',
  Reserve: 'operator',
  Release: 'operator',
  Clear: 'admin',
  Preempt: 'admin', // also PREEMPT AND ABORT (abort = true)
  RegisterAndMove: 'admin',
  CommandSession: 'viewer',
  CreateToken: 'admin',
  ListTokens: 'admin',
  RevokeToken: 'admin',
};

/** A FleetService method name as the proto spells it (`Audit`, `Takeover`, …). */
export type FleetMethodName =
  (typeof FleetServiceDefinition.methods)[keyof typeof FleetServiceDefinition.methods]['name'];

/**
 * Who may call what on FleetService: audits, key lookups, desired-state reads and plans (which send nothing)
 * are reads; changing the key registry or the desired state and running rollouts or takeovers is admin work
 * (an operator allocating keys could grant itself any key).
 */
export const FLEET_METHOD_ROLES: Readonly<Partial<Record<FleetMethodName, Role>>> = {
  Audit: 'viewer',
  ListKeys: 'viewer',
  DecodeKey: 'viewer',
  GetDesiredState: 'viewer',
  Plan: 'viewer',
  ListLoaders: 'viewer',
  Watch: 'viewer',
  AllocateKey: 'admin',
  RevokeKey: 'admin',
  SetDesiredState: 'admin',
  Apply: 'admin',
  Takeover: 'admin',
  ResetLogicalUnit: 'admin',
  AddWebhook: 'admin',
  ListWebhooks: 'admin',
  RemoveWebhook: 'admin',
};

/** Both tables; method names do not repeat across the two services. */
export const METHOD_ROLES: Readonly<Partial<Record<string, Role>>> = {
  ...CONTROL_METHOD_ROLES,
  ...FLEET_METHOD_ROLES,
};

/**
 * Methods that take a reservation away from someone, wipe registrations, revoke keys or roll out changes: with
 * authentication on they need a non-empty reason (recorded in the history), at this request field.
 */
export const REASON_FIELDS: Readonly<Record<string, 'options.reason' | 'reason'>> = {
  Clear: 'options.reason',
  Preempt: 'options.reason',
  RegisterAndMove: 'options.reason',
  Apply: 'options.reason',
  Takeover: 'options.reason',
  RevokeKey: 'reason',
  ResetLogicalUnit: 'reason',
};

/** Names of the methods in {@link REASON_FIELDS}. */
export const DESTRUCTIVE_METHODS: ReadonlySet<string> = new Set(Object.keys(REASON_FIELDS));

/** Role needed for a ControlService or FleetService method name; unknown names need admin (fail closed). */
export function roleForMethod(
  methodName: string,
  table: Readonly<Partial<Record<string, Role>>> = METHOD_ROLES,
): Role {
  return table[methodName] ?? 'admin';
}

/** The `$case` of a CommandSessionRequest command (`readKeys`, `register`, …). */
export type SessionCommandCase = NonNullable<CommandSessionRequest['command']>['$case'];

/** Which unary RPC each CommandSession command stands for (same checks, same roles). */
export const SESSION_COMMAND_METHODS: Readonly<Record<SessionCommandCase, ControlMethodName>> = {
  readKeys: 'ReadKeys',
  readReservation: 'ReadReservation',
  reportCapabilities: 'ReportCapabilities',
  readFullStatus: 'ReadFullStatus',
  register: 'Register',
  reserve: 'Reserve',
  release: 'Release',
  clear: 'Clear',
  preempt: 'Preempt',
  registerAndMove: 'RegisterAndMove',
};

/** Role a CommandSession command needs: the role of the unary RPC it stands for. */
export function requiredRole(commandCase: SessionCommandCase): Role {
  return roleForMethod(SESSION_COMMAND_METHODS[commandCase]);
}
