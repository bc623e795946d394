/**
 * ResetLogicalUnit (docs/fleet.md): breaks an SPC-2 reservation (or medium-removal prevention) with a logical
 * unit reset sent through one agent's path (SG_IO's SG_SCSI_RESET). Admin work with a reason; refused while the LU
 * shows persistent-reservation registrations or a reservation (the reset would abort their I/O too) and when there
 * is nothing to break. The reset goes through the command pipeline (the LU's turn) and is recorded in the history.
 */
import { Command } from '../../gen/prfleet/v1/agent.js';
import {
  ResetLogicalUnitResponse,
  type Finding,
  type ResetLogicalUnitRequest,
} from '../../gen/prfleet/v1/fleet.js';
import { outcomeToJSON, Outcome, type CommandResult } from '../../gen/prfleet/v1/scsi.js';
import { formatKey } from '../../common/key-layout.js';
import {
  ErrorReason,
  failedPrecondition,
  invalidArgument,
  notFound,
  shownInput,
} from '../../common/errors.js';
import type { FleetDeps } from './deps.js';
import { preventionFinding, probeSpc2, spc2Finding, type Spc2Probe } from './holds.js';
import { CommandLimiter } from './limiter.js';
import { observeUnit, pathOnline, type LuObservation, type ReadContext } from './observe.js';
import { selectUnits } from './selection.js';
import { requestedMs } from '../deadline.js';

/** The history action of a logical unit reset. */
export const LU_RESET_ACTION = 'LOGICAL_UNIT_RESET';

const DEFAULT_TIMEOUT_MS = 30_000;

/** FAILED_PRECONDITION when persistent-reservation state exists on the LU. */
function refuseIfPersistent(obs: LuObservation): void {
  const s = obs.state;
  if (s === undefined || (s.keys.length === 0 && !s.reserved)) return;
  const what = s.reserved
    ? `a persistent reservation (holder ${formatKey(s.holderKey)}) and ${s.keys.length} registrations`
    : `${s.keys.length} persistent-reservation registrations`;
  throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
    type: 'PERSISTENT_RESERVATION',
    subject: `logical-units/${obs.unit.luId}`,
    description: `${obs.unit.luId} has ${what}: a logical unit reset would abort their I/O too; release or take over instead (nothing was sent)`,
  });
}

/** The path to reset through: the one asked for, else the SPC-2 holder's, else the first online one. */
function pathFor(obs: LuObservation, request: ResetLogicalUnitRequest, probe?: Spc2Probe) {
  const online = obs.paths.map((p) => p.fleetPath).filter(pathOnline);
  const pick =
    request.agentId !== ''
      ? online.find(
          (p) =>
            p.agent.hello.agentId === request.agentId &&
            (request.path === '' || p.path.path === request.path),
        )
      : (online.find(
          (p) =>
            p.agent.hello.agentId === probe?.holder?.agentId && p.path.path === probe.holder.path,
        ) ?? online[0]);
  if (pick === undefined)
    throw failedPrecondition(ErrorReason.NO_ONLINE_PATH, {
      type: 'PATH',
      subject: `logical-units/${obs.unit.luId}`,
      description:
        request.agentId === ''
          ? `no online path to ${obs.unit.luId}`
          : `${shownInput(request.agentId)}${request.path === '' ? '' : `:${shownInput(request.path)}`} has no online path to ${obs.unit.luId}`,
    });
  return pick;
}

/** Runs ResetLogicalUnit for `actor`. */
export async function resetLogicalUnit(
  deps: FleetDeps,
  request: ResetLogicalUnitRequest,
  actor: string,
  signal: AbortSignal,
): Promise<ResetLogicalUnitResponse> {
  if (request.luId === '') throw invalidArgument('lu_id', 'required');
  if (request.reason.trim() === '')
    throw invalidArgument('reason', 'required: say why the reservation is broken');
  const timeoutMs = requestedMs(request.commandTimeout, DEFAULT_TIMEOUT_MS, 'command_timeout');
  const unit = selectUnits(deps.devices, {
    luIds: [request.luId],
    loaderIds: [],
    site: '',
    labels: [],
  })[0];
  if (unit === undefined) throw notFound('logical unit', request.luId, 'no agent reports it');
  const ctx: ReadContext = {
    read: deps.commands.read,
    limiter: new CommandLimiter(64, 4),
    timeoutMs,
    signal,
  };
  const obs = await observeUnit(unit, ctx);
  refuseIfPersistent(obs);
  const probe = await probeSpc2(obs, ctx);
  const prevented = deps.holds?.prevention(unit.luId);
  const holds: Finding[] = [
    ...(probe === undefined ? [] : [spc2Finding(obs, probe)]),
    ...(prevented === undefined ? [] : [preventionFinding(obs, prevented)]),
  ];
  if (holds.length === 0)
    throw failedPrecondition(ErrorReason.PRECONDITION_MISMATCH, {
      type: 'HOLD',
      subject: `logical-units/${unit.luId}`,
      description: `no SPC-2 reservation or medium-removal prevention seen on ${unit.luId}: nothing for a reset to break (nothing was sent)`,
    });
  const via = pathFor(obs, request, probe);
  const agentId = via.agent.hello.agentId;
  const path = via.path.path;
  if (request.dryRun)
    return ResetLogicalUnitResponse.fromPartial({
      holds,
      agentId,
      path,
      message: `dry run: would send a logical unit reset to ${unit.luId} through ${agentId}:${path}`,
    });
  const result = await sendReset(
    deps,
    { agentId, path, luId: unit.luId, actor, reason: request.reason, timeoutMs },
    signal,
  );
  deps.holds?.clear(unit.luId);
  const reread = await observeUnit(unit, ctx);
  const after = await probeSpc2(reread, ctx);
  const unitAttentions = reread.paths.flatMap((p) =>
    p.unitAttentions.map(
      (ua) =>
        `${p.fleetPath.agent.hello.agentId}:${p.fleetPath.path.path}: ${ua.sense?.description ?? 'unit attention'}`,
    ),
  );
  const good = result.outcome === Outcome.OUTCOME_GOOD;
  return ResetLogicalUnitResponse.fromPartial({
    holds,
    agentId,
    path,
    result,
    released: good && after === undefined,
    unitAttentions,
    message: !good
      ? `the reset through ${agentId}:${path} answered ${outcomeToJSON(result.outcome)} ${result.message}`.trim()
      : after === undefined
        ? `logical unit reset through ${agentId}:${path}: no SPC-2 reservation is left; every nexus gets a unit attention (29h) next`
        : `logical unit reset through ${agentId}:${path} sent, but TEST UNIT READY still conflicts: the device kept a reservation`,
  });
}

/** Sends the reset through the pipeline (the LU's turn) and appends it to the history. */
async function sendReset(
  deps: FleetDeps,
  r: {
    agentId: string;
    path: string;
    luId: string;
    actor: string;
    reason: string;
    timeoutMs: number;
  },
  signal: AbortSignal,
): Promise<CommandResult> {
  const command = Command.fromPartial({ path: r.path, kind: { $case: 'luReset', value: {} } });
  const { result } = await deps.commands.run(
    {
      target: { agentId: r.agentId, path: r.path, luId: r.luId, capabilities: undefined },
      command,
      actor: r.actor,
      reason: r.reason,
      timeoutMs: r.timeoutMs,
      journal: 'pipeline',
    },
    { signal },
  );
  const sense = result.sense?.raw;
  await deps.store.history.append({
    actor: r.actor,
    agentId: r.agentId,
    path: r.path,
    luId: r.luId,
    action: LU_RESET_ACTION,
    reservationKey: 0n,
    outcome: outcomeToJSON(result.outcome),
    ...(result.outcome === Outcome.OUTCOME_GOOD || result.status !== 0
      ? { status: result.status }
      : {}),
    ...(sense !== undefined && sense.length > 0
      ? { sense: Buffer.from(sense).toString('hex') }
      : {}),
    ...(result.commandId === '' ? {} : { commandId: result.commandId }),
    reason: r.reason,
  });
  deps.log.warn(
    {
      luId: r.luId,
      agentId: r.agentId,
      path: r.path,
      actor: r.actor,
      outcome: outcomeToJSON(result.outcome),
    },
    'logical unit reset sent',
  );
  return result;
}
