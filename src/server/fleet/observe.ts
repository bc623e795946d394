import { isAbortError } from 'abort-controller-x';
import type { Command } from '../../gen/prfleet/v1/agent.js';
import {
  Outcome,
  outcomeToJSON,
  PrinAction,
  type CommandResult,
  type FullStatusData as ReadFullStatusData,
  type FullStatusDescriptor,
  type ReadKeysData,
  type ReadReservationData,
  type PrType,
  type UnitAttention,
} from '../../gen/prfleet/v1/scsi.js';
import { summarizeRpcError } from '../../common/errors.js';
import type { FleetPath } from '../devices.js';
import type { SendRead } from '../commands/types.js';
import type { CommandLimiter } from './limiter.js';
import type { SelectedUnit } from './selection.js';

/** What one path said during a read. */
export interface PathObservation {
  /** The path. */
  readonly fleetPath: FleetPath;
  /** True when it answered GOOD. */
  readonly reachable: boolean;
  /** Why not, when it did not. */
  readonly error: string;
  /** Unit attentions the agent consumed on this nexus before the read ran (news for the audit). */
  readonly unitAttentions: readonly UnitAttention[];
  /** Keys as this path read them (READ KEYS or READ FULL STATUS). */
  readonly keys?: readonly bigint[];
}

/** The PR state of one LU as read. */
export interface LuState {
  /** PRgeneration. */
  readonly generation: number;
  /** Registered keys, once per registered nexus. */
  readonly keys: readonly bigint[];
  /** True when a persistent reservation exists. */
  readonly reserved: boolean;
  /** Holder key (0 for all-registrants types). */
  readonly holderKey: bigint;
  /** Reservation type. */
  readonly type: PrType;
  /** SCOPE. */
  readonly scope: number;
  /** Per-nexus registrations, when the device does READ FULL STATUS. */
  readonly fullStatus?: readonly FullStatusDescriptor[];
}

/** One LU read through its paths. */
export interface LuObservation {
  /** The LU. */
  readonly unit: SelectedUnit;
  /** Every path, reachable or not, in the unit's order. */
  readonly paths: readonly PathObservation[];
  /** The state, when some path answered. */
  readonly state?: LuState;
  /** Why the state is missing. */
  readonly error: string;
}

/** How reads are sent. */
export interface ReadContext {
  /** Sends one read (the command pipeline's read entry). */
  readonly read: SendRead;
  /** Bounds commands per agent and overall. */
  readonly limiter: CommandLimiter;
  /** Device timeout per read, ms. */
  readonly timeoutMs: number;
  /** The caller's signal. */
  readonly signal?: AbortSignal;
  /** Called once per command sent. */
  readonly onCommand?: () => void;
}

export type ReadOutcome =
  | { readonly result: CommandResult; readonly error?: undefined }
  | { readonly result?: undefined; readonly error: string };

/** True when the path's agent is connected and the agent last saw the node work. */
export function pathOnline(p: FleetPath): boolean {
  return p.agent.session !== undefined && p.path.online;
}

/** Sends one PRIN through `p`; RPC errors (offline, busy, draining) become an error text. Aborts pass through. */
export function readThrough(
  p: FleetPath,
  action: PrinAction,
  ctx: ReadContext,
  luId: string,
): Promise<ReadOutcome> {
  return sendRead(p, { $case: 'prin', value: { action, allocationLength: 0 } }, ctx, luId);
}

/**
 * Sends one read-only command through `p` (bounded by the limiter); anything but a GOOD answer with data, and RPC
 * errors (offline, busy, draining), become an error text. Aborts pass through.
 */
export async function sendRead(
  p: FleetPath,
  kind: NonNullable<Command['kind']>,
  ctx: ReadContext,
  luId: string,
): Promise<ReadOutcome> {
  // A complete literal (what fromPartial would build, without its copy per read).
  const command: Command = {
    commandId: '',
    path: p.path.path,
    timeout: undefined,
    idempotencyKey: '',
    traceparent: '',
    tracestate: '',
    kind,
  };
  try {
    const result = await ctx.limiter.run(
      p.agent.hello.agentId,
      () => {
        ctx.onCommand?.();
        return ctx.read(p.agent.hello.agentId, command, {
          timeoutMs: ctx.timeoutMs,
          luId,
          ...(ctx.signal ? { signal: ctx.signal } : {}),
        });
      },
      ctx.signal,
    );
    if (
      result.outcome !== Outcome.OUTCOME_GOOD ||
      (kind.$case === 'prin' && result.data === undefined)
    ) {
      const why =
        result.message !== ''
          ? `: ${result.message}`
          : result.sense
            ? `: ${result.sense.description}`
            : '';
      return { error: `${outcomeToJSON(result.outcome)}${why}` };
    }
    return { result };
  } catch (e) {
    if (isAbortError(e) || ctx.signal?.aborted) throw e;
    const summary = summarizeRpcError(e);
    if (summary === undefined) throw e;
    return { error: `${summary.codeName}: ${summary.message}` };
  }
}

function supportsFullStatus(unit: SelectedUnit): boolean {
  const caps = unit.unit.capabilities;
  // An unknown profile is tried (the device decides); a known one only when it lists READ FULL STATUS.
  return (
    caps === undefined ||
    caps.profile === '' ||
    caps.profile === 'unknown' ||
    caps.prinActions.includes(PrinAction.PRIN_ACTION_READ_FULL_STATUS)
  );
}

function offlineObservation(fleetPath: FleetPath): PathObservation {
  return {
    fleetPath,
    reachable: false,
    error:
      fleetPath.agent.session === undefined
        ? 'agent offline'
        : 'path offline (the agent saw the node fail)',
    unitAttentions: [],
  };
}

/** What `outcome` (plus `extra` results of the same read) says about the path of `previous`. */
export function pathObservation(
  previous: PathObservation,
  outcome: ReadOutcome,
  extra: readonly CommandResult[] = [],
): PathObservation {
  if (outcome.error !== undefined) return { ...previous, reachable: false, error: outcome.error };
  const uas =
    extra.length === 0
      ? outcome.result.unitAttentions
      : [outcome.result, ...extra].flatMap((r) => r.unitAttentions);
  const data = outcome.result.data;
  const keys =
    data?.$case === 'readKeys'
      ? data.value.keys
      : data?.$case === 'fullStatus'
        ? data.value.descriptors.map((d) => d.key)
        : undefined;
  // Named fields first: V8 takes a slow path for keys added after a leading spread.
  return {
    fleetPath: previous.fleetPath,
    reachable: true,
    error: '',
    unitAttentions: uas,
    ...(keys ? { keys } : {}),
  };
}

/** A state read through one path, or why not; `outcome` and `extra` are what that path is recorded with. */
interface PrimaryRead {
  readonly state?: LuState;
  readonly outcome: ReadOutcome;
  readonly extra?: readonly CommandResult[];
}

/** The LU's state from a READ FULL STATUS answer. */
export function stateFromFullStatus(fs: ReadFullStatusData): LuState {
  const holder = fs.descriptors.find((d) => d.reservationHolder);
  return {
    generation: fs.generation,
    keys: fs.descriptors.map((d) => d.key),
    reserved: holder !== undefined,
    holderKey: holder?.key ?? 0n,
    type: holder?.type ?? 0,
    scope: holder?.scope ?? 0,
    fullStatus: fs.descriptors,
  };
}

/** The LU's state from READ KEYS and READ RESERVATION answers. */
export function stateFromKeysAndReservation(rk: ReadKeysData, rr: ReadReservationData): LuState {
  return {
    // Two commands: should the generation have moved between them, the newer one is the truth.
    generation: Math.max(rr.generation, rk.generation),
    keys: rk.keys,
    reserved: rr.reserved,
    holderKey: rr.key,
    type: rr.type,
    scope: rr.scope,
  };
}

/** Reads the LU's state through `p`: READ FULL STATUS when the profile has it, else READ KEYS (+ READ RESERVATION). */
async function readPrimary(
  unit: SelectedUnit,
  p: FleetPath,
  ctx: ReadContext,
): Promise<PrimaryRead> {
  if (supportsFullStatus(unit)) {
    const full = await readThrough(p, PrinAction.PRIN_ACTION_READ_FULL_STATUS, ctx, unit.luId);
    if (full.result?.data?.$case === 'fullStatus')
      return { state: stateFromFullStatus(full.result.data.value), outcome: full };
  }
  // READ KEYS first: with no registration there can be no persistent reservation (its holder must be a
  // registrant, SPC-4 5.14.9), so an empty LU costs one command; otherwise READ RESERVATION follows.
  const keys = await readThrough(p, PrinAction.PRIN_ACTION_READ_KEYS, ctx, unit.luId);
  if (keys.result?.data?.$case === 'readKeys' && keys.result.data.value.keys.length === 0) {
    const rk = keys.result.data.value;
    const state = {
      generation: rk.generation,
      keys: [],
      reserved: false,
      holderKey: 0n,
      type: 0,
      scope: 0,
    };
    return { state, outcome: keys };
  }
  const reservation: ReadOutcome =
    keys.error !== undefined
      ? keys
      : await readThrough(p, PrinAction.PRIN_ACTION_READ_RESERVATION, ctx, unit.luId);
  if (
    reservation.result?.data?.$case === 'readReservation' &&
    keys.result?.data?.$case === 'readKeys'
  ) {
    const state = stateFromKeysAndReservation(
      keys.result.data.value,
      reservation.result.data.value,
    );
    return { state, outcome: keys, extra: [reservation.result] };
  }
  return { outcome: reservation.error !== undefined ? reservation : keys };
}

/**
 * Reads one LU through every online path: READ FULL STATUS on the first path when the profile has it (one
 * command gives generation, keys per nexus and the holder), else READ RESERVATION + READ KEYS there; READ KEYS on
 * every other online path (to prove the path and collect its unit attentions). If the first path fails, the
 * state comes from another path that answered. Offline paths are reported, never dropped.
 */
export async function observeUnit(unit: SelectedUnit, ctx: ReadContext): Promise<LuObservation> {
  const paths: PathObservation[] = unit.paths.map(offlineObservation);
  const online: number[] = [];
  for (let i = 0; i < paths.length; i++)
    if (pathOnline((paths[i] as PathObservation).fleetPath)) online.push(i);
  if (online.length === 0)
    return { unit, paths, error: 'no online path: every agent with a path to it is offline' };

  const primary = async (i: number): Promise<LuState | undefined> => {
    const read = await readPrimary(unit, (paths[i] as PathObservation).fleetPath, ctx);
    paths[i] = pathObservation(paths[i] as PathObservation, read.outcome, read.extra);
    return read.state;
  };
  const [first, ...rest] = online as [number, ...number[]];
  const others = rest.map(async (i) => {
    const p = paths[i] as PathObservation;
    paths[i] = pathObservation(
      p,
      await readThrough(p.fleetPath, PrinAction.PRIN_ACTION_READ_KEYS, ctx, unit.luId),
    );
  });
  // Awaited together: when the caller aborts, the primary read and the others all reject, and each rejection
  // must have a handler (an unhandled one ends the process).
  let [state] = await Promise.all([primary(first), Promise.all(others)]);
  for (const i of rest) {
    if (state !== undefined) break;
    if ((paths[i] as PathObservation).reachable) state = await primary(i);
  }
  if (state === undefined) {
    const errors = [...new Set(online.map((i) => (paths[i] as PathObservation).error))].join('; ');
    return { unit, paths, error: `no path answered: ${errors}` };
  }
  return { unit, paths, state, error: '' };
}
