import type { Logger } from 'pino';
import type { Path } from '../../gen/prfleet/v1/scsi.js';

import { quoteInput } from '../../common/errors.js';
import { hasControl, printable } from '../../common/printable.js';
import { authorizeInventory, type PeerIdentity } from '../auth/mtls.js';
import { violationsOf, type EdgeMessage, type EdgeSchema } from '../edge.js';
import { DEFAULT_MAX_AGENT_PATHS, screenInventory, type AgentPolicy } from './inventory-screen.js';
import type { AgentSession } from './link.js';
import type { AgentRegistry } from './registry.js';
import { sessionFields } from './results.js';

/** What decides which of an agent's reported paths the server keeps. */
export interface InventoryChecks {
  readonly registry: AgentRegistry;
  readonly log: Logger;
  /** Paths one agent may report; a larger inventory is refused whole. @default DEFAULT_MAX_AGENT_PATHS */
  readonly maxAgentPaths?: number | undefined;
  /** Sites, LU ids and loaders each agent may report (PRFLEET_AGENT_POLICY). @default no restriction */
  readonly agentPolicy?: AgentPolicy | undefined;
  /** The edge's descriptors, and Path's among them: reported paths must pass the request rules. @default unchecked */
  readonly schema?: EdgeSchema | undefined;
  readonly pathDesc?: EdgeMessage | undefined;
}

/**
 * Takes an agent's inventory: the certificate's allow-list first (so nothing can be routed elsewhere), then
 * the server's screens; what is left becomes the agent's paths in the registry.
 */
export function acceptInventory(
  checks: InventoryChecks,
  session: AgentSession,
  identity: PeerIdentity | undefined,
  paths: readonly Path[],
): void {
  const { log } = checks;
  const { allowed, denied } = authorizeInventory(identity, wellFormed(checks, session, paths));
  if (denied.length > 0) {
    log.warn(
      { ...sessionFields(session), denied: denied.map((p) => p.path), allow: identity?.allow },
      'inventory paths outside the certificate allow-list dropped',
    );
  }
  const kept = screen(checks, session, allowed);
  checks.registry.setInventory(session, kept);
  log.info(
    { ...sessionFields(session), paths: kept.length, luIds: [...new Set(kept.map((p) => p.luId))] },
    'inventory',
  );
}

/**
 * The paths that pass the edge's rules (lengths by field name, no control characters), each device node once:
 * what an inventory says goes into ListDevices, the events and the web view. The others are dropped and logged.
 */
function wellFormed(
  checks: InventoryChecks,
  session: AgentSession,
  paths: readonly Path[],
): readonly Path[] {
  const { schema, pathDesc } = checks;
  const bad = new Map<number, string>();
  if (schema !== undefined && pathDesc !== undefined) {
    paths = paths.map(withPrintableInquiry);
    paths.forEach((path, i) => {
      const [first] = violationsOf(pathDesc, path, `inventory.paths[${i}].`);
      if (first !== undefined) bad.set(i, `${first.field}: ${first.description}`);
    });
  }
  // A device node leads to one LU, the one commands through it reach (the first listed): a later entry would
  // list it as a path to another LU that no command could use.
  const seen = new Set<string>();
  paths.forEach((path, i) => {
    if (bad.has(i)) return;
    if (seen.has(path.path))
      bad.set(
        i,
        `inventory.paths[${i}].path: ${quoteInput(path.path)} reported again (the first is kept)`,
      );
    seen.add(path.path);
  });
  if (bad.size === 0) return paths;
  checks.log.warn(
    { ...sessionFields(session), dropped: [...bad.values()].slice(0, 10), count: bad.size },
    'inventory paths that break the request rules dropped (docs/api-limits.md)',
  );
  return paths.filter((_, i) => !bad.has(i));
}

/**
 * The path with control characters in its INQUIRY text (vendor, product, revision, serial: what a device says
 * about itself, decoded as latin1) shown as '.', as a key layout shows unprintable bytes: an odd device stays
 * listed; only what is still wrong after that (lengths, ids) drops the path.
 */
function withPrintableInquiry(path: Path): Path {
  const fields = ['vendor', 'product', 'revision', 'serial'] as const;
  if (!fields.some((f) => hasControl(path[f]))) return path;
  const cleaned = { ...path };
  for (const f of fields) cleaned[f] = printable(path[f]);
  return cleaned;
}

/**
 * What of an inventory is kept: at most maxAgentPaths paths (a larger one is refused whole: its paths are not
 * trusted), none outside the agent's policy, none contradicting an LU identity another path established.
 */
function screen(checks: InventoryChecks, session: AgentSession, paths: readonly Path[]): Path[] {
  const { registry, log } = checks;
  const maxPaths = checks.maxAgentPaths ?? DEFAULT_MAX_AGENT_PATHS;
  if (paths.length > maxPaths) {
    log.error(
      { ...sessionFields(session), paths: paths.length, max: maxPaths },
      `inventory refused: ${paths.length} paths, more than one agent may report (PRFLEET_MAX_AGENT_PATHS=${maxPaths}); the agent's paths are not listed or routed to`,
    );
    return [];
  }
  const { kept, refused, conflicts } = screenInventory({
    agentId: session.agentId,
    site: registry.get(session.agentId)?.hello.site ?? '',
    paths,
    registry,
    policy: checks.agentPolicy,
  });
  if (refused.length > 0) {
    log.warn(
      {
        ...sessionFields(session),
        refused: refused.map((r) => ({ path: r.path.path, why: r.why })),
      },
      'inventory paths outside the agent policy refused (PRFLEET_AGENT_POLICY)',
    );
  }
  for (const c of conflicts) {
    log.error(
      {
        ...sessionFields(session),
        path: c.path.path,
        luId: c.path.luId,
        claimed: c.claimed,
        established: c.established,
        establishedBy: c.establishedBy,
      },
      'conflicting LU identity quarantined: the path claims an LU id another path established with another INQUIRY identity; it is not listed or routed to',
    );
  }
  registry.quarantine(session.agentId, conflicts);
  return kept;
}
