import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import * as z from '../../common/zod-mini.js';
import { nonEmpty } from '../env-schema.js';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import { globToRegExp } from '../../common/device-glob.js';
import type { AgentRegistry } from './registry.js';
import { pathsByLu } from '../devices.js';

/**
 * What the server lets an agent report, beyond its certificate's allow-list: an LU's identity is established by
 * its first reporter, not claimed by each; the operator's policy (PRFLEET_AGENT_POLICY) binds agents to sites,
 * LU ids and loaders; an inventory has at most PRFLEET_MAX_AGENT_PATHS paths.
 */

/** Paths one agent may report when PRFLEET_MAX_AGENT_PATHS is not set. */
export const DEFAULT_MAX_AGENT_PATHS = 4096;

const Rule = z.strictObject({
  sites: z.optional(z.array(nonEmpty())),
  luIds: z.optional(z.array(nonEmpty())),
  loaders: z.optional(z.array(nonEmpty())),
});

/** One agent's rule: each list given bounds what it may report (globs for LU ids and loaders). */
export type AgentRule = z.infer<typeof Rule>;

/** agentId → rule; the key `*` is the rule of agents not named. An agent with no rule may report nothing. */
export type AgentPolicy = ReadonlyMap<string, AgentRule>;

/** Reads PRFLEET_AGENT_POLICY (YAML or JSON: `{ agents: { <id>: { sites, luIds, loaders } } }`); throws naming the file. */
export function loadAgentPolicy(file: string): AgentPolicy {
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`PRFLEET_AGENT_POLICY ${file}: ${(e as Error).message}`, { cause: e });
  }
  const result = z.strictObject({ agents: z.record(z.string(), Rule) }).safeParse(parsed);
  if (!result.success)
    throw new Error(`PRFLEET_AGENT_POLICY ${file}: ${z.prettifyError(result.error)}`);
  return new Map(Object.entries(result.data.agents));
}

/** Why a path was not kept. */
export interface RefusedPath {
  readonly path: Path;
  readonly why: string;
}

/** A path claiming an LU id whose established identity it contradicts: quarantined (never kept, never routed). */
export interface ConflictingClaim {
  readonly path: Path;
  /** Who established the identity, and what it is. */
  readonly establishedBy: { agentId: string; path: string };
  readonly established: string;
  readonly claimed: string;
}

/** The INQUIRY identity of a path, as compared across reporters (LU designators only: port ones differ by path). */
export function identityOf(path: Path): string {
  const lu = path.designators
    .filter((d) => d.association === 0)
    .map((d) => `${d.designatorType}:${d.codeSet}:${Buffer.from(d.value).toString('hex')}`)
    .sort();
  return JSON.stringify([path.vendor.trim(), path.product.trim(), path.serial.trim(), lu]);
}

/** Splits an agent's inventory into what is kept, what its policy refuses and what contradicts an LU's identity. */
export function screenInventory(options: {
  agentId: string;
  site: string;
  paths: readonly Path[];
  registry: AgentRegistry;
  policy?: AgentPolicy | undefined;
}): { kept: Path[]; refused: RefusedPath[]; conflicts: ConflictingClaim[] } {
  const { agentId, registry } = options;
  const rule = options.policy === undefined ? undefined : policyRule(options.policy, agentId);
  const kept: Path[] = [];
  const refused: RefusedPath[] = [];
  const conflicts: ConflictingClaim[] = [];
  // First reporter wins: identities other agents established, then this inventory's own first path per LU.
  const groups = pathsByLu(registry);
  const mine = new Map<string, Path>();
  for (const path of options.paths) {
    const why = rule === undefined ? undefined : rule(options.site, path);
    if (why !== undefined) {
      refused.push({ path, why });
      continue;
    }
    if (path.luId !== '') {
      const other = groups.get(path.luId)?.find((p) => p.agent.hello.agentId !== agentId);
      const first =
        other === undefined
          ? mine.has(path.luId)
            ? { agentId, path: mine.get(path.luId) as Path }
            : undefined
          : { agentId: other.agent.hello.agentId, path: other.path };
      if (first !== undefined && identityOf(first.path) !== identityOf(path)) {
        conflicts.push({
          path,
          establishedBy: { agentId: first.agentId, path: first.path.path },
          established: identityOf(first.path),
          claimed: identityOf(path),
        });
        continue;
      }
      if (!mine.has(path.luId)) mine.set(path.luId, path);
    }
    kept.push(path);
  }
  return { kept, refused, conflicts };
}

function policyRule(
  policy: AgentPolicy,
  agentId: string,
): (site: string, path: Path) => string | undefined {
  const rule = policy.get(agentId) ?? policy.get('*');
  if (rule === undefined) return () => `agent ${agentId} has no rule in PRFLEET_AGENT_POLICY`;
  const luIds = rule.luIds?.map(globToRegExp);
  const loaders = rule.loaders?.map(globToRegExp);
  return (site, path) => {
    if (rule.sites !== undefined && !rule.sites.includes(site))
      return `site ${JSON.stringify(site)} is not one of ${rule.sites.join(', ')}`;
    if (luIds !== undefined && !luIds.some((re) => re.test(path.luId)))
      return `LU id ${JSON.stringify(path.luId)} matches none of ${rule.luIds?.join(', ')}`;
    if (loaders !== undefined && !loaders.some((re) => re.test(path.loaderId)))
      return `loader ${JSON.stringify(path.loaderId)} matches none of ${rule.loaders?.join(', ')}`;
    return undefined;
  };
}
