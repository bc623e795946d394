import type { Target } from '../gen/prfleet/v1/control.js';
import type { Path } from '../gen/prfleet/v1/scsi.js';
import {
  ErrorReason,
  invalidArgument,
  notFound,
  shownInput,
  unavailable,
} from '../common/errors.js';
import type { AgentRecord, AgentRegistry } from './agents/index.js';
import { isOnline, pathsByLu, type FleetPath } from './devices.js';

/** Which agent and path a command goes through, and the LU behind it. */
export interface ResolvedTarget {
  /** Agent id. */
  readonly agentId: string;
  /** The agent's record. */
  readonly agent: AgentRecord;
  /** The path as the agent reported it (capabilities, lu_id, …). */
  readonly path: Path;
  /** Logical unit id (the path's lu_id). */
  readonly luId: string;
}

/**
 * Resolves a request's Target against the inventories.
 *
 * - agent_id + path: the path must be in that agent's last inventory (NOT_FOUND otherwise); with lu_id too, the
 *   path must lead to that LU: an unknown lu_id is NOT_FOUND, a known one the path does not lead to is
 *   INVALID_ARGUMENT on `target.path`.
 * - PRIN only: lu_id alone picks the first online path (sorted by agent, path); lu_id + agent_id picks that
 *   agent's online path. No online path → UNAVAILABLE {NO_ONLINE_PATH}.
 * - PROUT needs agent_id and path (INVALID_ARGUMENT naming the missing one).
 *
 * Connectivity of an explicit agent is not checked here (the router answers UNAVAILABLE {AGENT_OFFLINE}), so a
 * dry run works for an offline agent.
 */
export function resolveTarget(
  registry: AgentRegistry,
  target: Target | undefined,
  mode: 'prin' | 'prout',
  fieldPrefix = 'target',
): ResolvedTarget {
  const luId = target?.luId ?? '';
  const agentId = target?.agentId ?? '';
  const pathName = target?.path ?? '';
  const field = (name: string) => `${fieldPrefix}.${name}`;

  if (mode === 'prout') {
    if (agentId === '')
      throw invalidArgument(
        field('agent_id'),
        'required for PERSISTENT RESERVE OUT (the initiator to act as)',
      );
    if (pathName === '')
      throw invalidArgument(
        field('path'),
        'required for PERSISTENT RESERVE OUT (the initiator to act as)',
      );
  }
  if (agentId === '' && pathName === '' && luId === '') {
    throw invalidArgument(fieldPrefix, 'give lu_id, or agent_id and path');
  }
  if (agentId === '' && pathName !== '')
    throw invalidArgument(field('agent_id'), 'required with path');

  // The LU grouping (pathsByLu: kept per registry, O(agents) to check) is looked at only when the request names an
  // LU without the agent path that leads to it (agent_id + path, the common case, costs O(that agent's paths)).
  let grouped: ReadonlyMap<string, readonly FleetPath[]> | undefined;
  const groups = () => (grouped ??= pathsByLu(registry));
  const unknownLu = () =>
    notFound('logical unit', luId, `no agent reports logical unit ${shownInput(luId)}`);

  if (agentId !== '') {
    const agent = registry.get(agentId);
    if (pathName !== '') {
      const path = agent?.paths.find((p) => p.path === pathName);
      // The path itself proves its LU is known; otherwise the LU check comes first, as it always did.
      if (luId !== '' && path?.luId !== luId && !groups().has(luId)) throw unknownLu();
    } else if (luId !== '' && !groups().has(luId)) throw unknownLu();
    if (agent === undefined)
      throw notFound('agent', agentId, `agent ${shownInput(agentId)} is unknown to this server`);
    if (pathName === '') {
      // PRIN with lu_id + agent_id: that agent's path to the LU.
      if (luId === '')
        throw invalidArgument(field('path'), 'required with agent_id when lu_id is empty');
      const candidates = (groups().get(luId) ?? []).filter((p) => p.agent === agent);
      if (candidates.length === 0) {
        throw notFound(
          'path',
          `${agentId}:${luId}`,
          `agent ${shownInput(agentId)} has no path to logical unit ${shownInput(luId)}`,
        );
      }
      const chosen = candidates.find(isOnline) ?? candidates[0];
      if (chosen === undefined) throw new Error('unreachable: empty candidates');
      return { agentId, agent, path: chosen.path, luId };
    }
    const path = agent.paths.find((p) => p.path === pathName);
    if (path === undefined) {
      throw notFound(
        'path',
        `${agentId}:${pathName}`,
        `agent ${shownInput(agentId)} reported no path ${shownInput(pathName)}`,
      );
    }
    if (luId !== '' && path.luId !== luId) {
      throw invalidArgument(
        field('path'),
        `${shownInput(pathName)} on agent ${shownInput(agentId)} leads to logical unit ${path.luId || '(unidentified)'}, not ${shownInput(luId)}`,
      );
    }
    return { agentId, agent, path, luId: path.luId };
  }

  // lu_id only (PRIN): pick an online path.
  if (!groups().has(luId)) throw unknownLu();
  const online = (groups().get(luId) ?? []).find(isOnline);
  if (online === undefined) {
    throw unavailable(
      ErrorReason.NO_ONLINE_PATH,
      `no connected agent has an online path to logical unit ${shownInput(luId)}`,
      { lu_id: shownInput(luId) },
    );
  }
  return { agentId: online.agent.hello.agentId, agent: online.agent, path: online.path, luId };
}
