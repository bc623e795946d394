import { Finding, FindingKind, Severity } from '../../../gen/prfleet/v1/fleet.js';
import { pathsByLu, toLogicalUnit } from '../../devices.js';
import type { FleetDeps } from '../deps.js';
import { suggest } from '../suggest.js';

/** A warning for each agent id this server does not know (as SetDesiredState and AllocateKey give them). */
export function unknownAgentWarnings(deps: FleetDeps, agentIds: Iterable<string>): Finding[] {
  return [...agentIds]
    .filter((agentId) => agentId !== '' && deps.devices.get(agentId) === undefined)
    .map((agentId) =>
      Finding.fromPartial({
        kind: FindingKind.FINDING_KIND_UNREACHABLE,
        severity: Severity.SEVERITY_WARNING,
        agentId,
        message: `agent ${agentId} is unknown to this server`,
        suggestedAction: `start prfleet-agent on ${agentId}`,
      }),
    );
}

/** A warning when no known agent reports `site`. */
export function unknownSiteWarnings(deps: FleetDeps, site: string): Finding[] {
  if (site === '' || deps.devices.list().some((a) => a.hello.site === site)) return [];
  return [
    Finding.fromPartial({
      kind: FindingKind.FINDING_KIND_UNREACHABLE,
      severity: Severity.SEVERITY_WARNING,
      message: `no agent reports site ${site}`,
      suggestedAction: suggest.agents(),
    }),
  ];
}

/** Warnings for a desired-state scope that names nothing yet: an unknown loader, or a group's unknown site. */
export function unknownScopeWarnings(
  deps: FleetDeps,
  scope: { kind: 'loader' | 'group'; id: string },
  groupSite: string,
): Finding[] {
  if (scope.kind === 'group') return unknownSiteWarnings(deps, groupSite);
  const known = [...pathsByLu(deps.devices)].some(
    ([luId, paths]) => toLogicalUnit(luId, paths).loaderId === scope.id,
  );
  if (known) return [];
  return [
    Finding.fromPartial({
      kind: FindingKind.FINDING_KIND_UNREACHABLE,
      severity: Severity.SEVERITY_WARNING,
      loaderId: scope.id,
      message: `no agent reports loader ${scope.id}`,
      suggestedAction: suggest.devices(),
    }),
  ];
}
