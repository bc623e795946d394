import type { CallContext } from 'nice-grpc-common';
import {
  DesiredState,
  Finding,
  FindingKind,
  Severity,
  type GetDesiredStateRequest,
  type GetDesiredStateResponse,
  type SetDesiredStateRequest,
  type SetDesiredStateResponse,
} from '../../../gen/prfleet/v1/fleet.js';
import { invalidArgument, notFound, shownInput } from '../../../common/errors.js';
import type { KeyPurpose } from '../../../common/key-layout.js';
import type { JsonValue } from '../../store/index.js';
import { actorOnBehalfOf, defaultPrincipalOf } from '../../history.js';
import type { FleetDeps } from '../deps.js';
import { recordToProto, toStoreScope, validateDesiredState } from '../desired.js';
import { loadKeyIndex } from '../key-index.js';
import { suggest } from '../suggest.js';
import { mapStore } from './store-errors.js';
import { unknownAgentWarnings, unknownScopeWarnings } from './warnings.js';

/** SetDesiredState: stores the state (compare-and-set on its version), with warnings the server can see now. */
export async function setDesiredState(
  deps: FleetDeps,
  request: SetDesiredStateRequest,
  ctx: CallContext,
): Promise<SetDesiredStateResponse> {
  const { store, log } = deps;
  const scope = toStoreScope(request.scope, 'scope');
  const state = validateDesiredState(request.state, scope);
  if (request.updatedBy === '') throw invalidArgument('updated_by', 'required');
  const by = actorOnBehalfOf(defaultPrincipalOf(ctx), request.updatedBy);
  const record = await mapStore(() =>
    store.desired.put(scope, desiredStateJson(state), {
      actor: by,
      ...(request.expectedVersion === undefined
        ? {}
        : { expectedVersion: request.expectedVersion }),
    }),
  );
  // Warnings the server can see now; the state is stored anyway (hosts may simply not be connected yet).
  const keys = await loadKeyIndex(store);
  const hosts = new Set(state.registeredAgentIds);
  for (const r of [state.changer, state.drives])
    if (r && r.holderAgentId !== '') hosts.add(r.holderAgentId);
  const warnings: Finding[] = [
    ...unknownScopeWarnings(deps, scope, state.groupSite),
    ...unknownAgentWarnings(deps, hosts),
  ];
  for (const agentId of hosts) {
    if (keys.activeKey(agentId, state.keyPurpose as KeyPurpose) === undefined) {
      warnings.push(
        Finding.fromPartial({
          kind: FindingKind.FINDING_KIND_MISSING_KEY,
          severity: Severity.SEVERITY_WARNING,
          agentId,
          message: `${agentId} has no valid ${state.keyPurpose} key`,
          suggestedAction: suggest.allocateKey(
            agentId,
            deps.devices.get(agentId)?.hello.site ?? '',
            state.keyPurpose,
          ),
        }),
      );
    }
  }
  log.info({ scope, version: record.version, by, warnings: warnings.length }, 'desired state set');
  return { record: recordToProto(record), warnings };
}

/** GetDesiredState: one scope's state, or every stored one when no scope is named. */
export async function getDesiredState(
  deps: FleetDeps,
  request: GetDesiredStateRequest,
): Promise<GetDesiredStateResponse> {
  const { store } = deps;
  if (request.scope?.scope === undefined)
    return { records: (await store.desired.list()).map(recordToProto) };
  const scope = toStoreScope(request.scope, 'scope');
  const record = await mapStore(() => store.desired.get(scope));
  if (record === undefined)
    throw notFound(
      'desired state',
      `${scope.kind}/${scope.id}`,
      `no desired state for ${scope.kind} ${shownInput(scope.id)}`,
    );
  return { records: [recordToProto(record)] };
}

/** The stored JSON of a desired state (proto JSON). */
function desiredStateJson(state: DesiredState): JsonValue {
  return DesiredState.toJSON(state) as JsonValue;
}
