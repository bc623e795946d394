/**
 * The `prfleet` commands that findings and warnings suggest, in one place so each one is a command (and flags)
 * the CLI has: test/cli/suggestions.test.ts runs every one of them through the CLI's own parser.
 */
import { formatKey } from '../../common/key-layout.js';

/** Placeholders for what the server cannot know; the operator fills them in. */
const HOST = '<host>';

/** Operator-facing commands, by what they do. */
export const suggest = {
  /** Allocate a registry key for a host (site and owner are required by the CLI). */
  allocateKey: (agentId: string, site: string, purpose: string) =>
    `prfleet registry allocate --agent ${agentId} --site ${site || '<site>'} --purpose ${purpose} --owner <who>`,
  /** Take an LU or a loader from a key, or from every key the registry issued to a host, as `by`. */
  takeover: (
    victim: { key: bigint } | { agent: string },
    where: { lu: string } | { loader: string },
    by = HOST,
  ) =>
    `prfleet takeover ${'key' in victim ? `--victim-key ${formatKey(victim.key)}` : `--victim-agent ${victim.agent}`} ${'lu' in where ? `--lu ${where.lu}` : `--loader ${where.loader || '<loader>'}`} --by ${by}`,
  /** Look at the LUs of a loader. */
  devicesOfLoader: (loader: string) => `prfleet devices --loader ${loader || '<loader>'}`,
  /** Look at the agents. */
  agents: () => 'prfleet agents',
  /** Look at every LU. */
  devices: () => 'prfleet devices',
  /** Plan and apply the desired state of one LU. */
  planAndApply: (lu: string) => `prfleet plan --lu ${lu}, then prfleet apply --lu ${lu}`,
  /** Set a loader's desired state. */
  setDesired: () => 'prfleet desired set --loader <id> --register <host> --by <you>',
  /** Register a host's key on one of its paths. */
  register: (agentId: string) => `prfleet register ${agentId}:<path> --new-key <key>`,
  /** Unregister a key on one path (a duplicated registration needs it once per copy). */
  unregister: (agentId: string, path: string, key: bigint) =>
    `prfleet register ${agentId || HOST}:${path || '<path>'} --key ${formatKey(key)} --new-key 0`,
  /** Break an SPC-2 reservation or medium-removal prevention with a logical unit reset (admin, with a reason). */
  resetLu: (lu: string, via?: string) =>
    `prfleet reset-lu --lu ${lu}${via === undefined ? '' : ` --agent ${via}`} --reason <why>`,
} as const;
