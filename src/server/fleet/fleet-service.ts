import { ServerError, Status } from 'nice-grpc-common';
import type { Server } from 'nice-grpc';
import {
  FleetServiceDefinition,
  type FleetServiceImplementation,
} from '../../gen/prfleet/v1/fleet.js';
import { directServiceDefinition } from '../../common/service-definition.js';
import { defaultPrincipalOf } from '../history.js';
import { runAudit } from './audit.js';
import type { FleetDeps } from './deps.js';
import { resetLogicalUnit } from './lu-reset.js';
import { ElementViewCache, listLoaders } from './loaders.js';
import { getDesiredState, setDesiredState } from './service/desired-state.js';
import { allocateKey, decodeKey, listKeys, revokeKey } from './service/keys.js';
import { apply, plan } from './service/plan-apply.js';
import { takeover } from './service/takeover.js';

// Kept here for callers outside the fleet engine that import them from this module.
export { ROLLOUT_DEFAULTS, rolloutSettings } from './service/rollout-settings.js';
export { storeErrorToRpc } from './service/store-errors.js';

function webhooksOf(deps: FleetDeps): NonNullable<FleetDeps['webhooks']> {
  if (deps.webhooks === undefined)
    throw new ServerError(Status.FAILED_PRECONDITION, 'this server delivers no webhooks');
  return deps.webhooks;
}

/**
 * The FleetService implementation over the router, the agent registry and the store; each RPC group lives in
 * service/ (keys, desired state, plan/apply, takeover); webhooks are the events module's.
 */
export function createFleetService(fleetDeps: FleetDeps): FleetServiceImplementation {
  // One element view cache: audits refresh it, ListLoaders reuses what is fresh.
  const elementViews = new ElementViewCache();
  const deps: FleetDeps = { ...fleetDeps, elementViews };

  return {
    audit: (request, ctx) => runAudit(deps, request, ctx.signal),
    listLoaders: (request, ctx) => listLoaders(deps, elementViews, request, ctx.signal),
    watch(request, ctx) {
      if (deps.watch === undefined)
        throw new ServerError(Status.FAILED_PRECONDITION, 'this server keeps no event log');
      return deps.watch(request, ctx);
    },
    resetLogicalUnit: (request, ctx) =>
      resetLogicalUnit(deps, request, defaultPrincipalOf(ctx), ctx.signal),
    addWebhook: async (request, ctx) => webhooksOf(deps).addWebhook(request, ctx),
    listWebhooks: async (request) => webhooksOf(deps).listWebhooks(request),
    removeWebhook: async (request) => webhooksOf(deps).removeWebhook(request),
    allocateKey: (request) => allocateKey(deps, request),
    listKeys: (request) => listKeys(deps, request),
    revokeKey: (request, ctx) => revokeKey(deps, request, ctx),
    decodeKey: (request) => decodeKey(deps, request),
    setDesiredState: (request, ctx) => setDesiredState(deps, request, ctx),
    getDesiredState: (request) => getDesiredState(deps, request),
    plan: (request, ctx) => plan(deps, request, ctx),
    apply: (request, ctx) => apply(deps, request, ctx),
    takeover: (request, ctx) => takeover(deps, request, ctx),
  };
}

/** Adds FleetService to a nice-grpc server. */
export function registerFleetService(
  server: Pick<Server, 'add'>,
  deps: FleetDeps,
  definitionOptions?: Parameters<typeof directServiceDefinition>[1],
): void {
  // Audit reports are complete messages: encode them without nice-grpc's fromPartial deep copy.
  server.add(
    directServiceDefinition(FleetServiceDefinition, definitionOptions),
    createFleetService(deps),
  );
}
