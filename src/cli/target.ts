/**
 * Target addressing: which logical unit, and which initiator (agent + path) to act as. Given either as
 * `--lu/--agent/--path` flags or as one compact `agent:path` argument (split at the first colon, so device
 * paths may contain colons but agent ids may not).
 */
import { InvalidArgumentError } from '@commander-js/extra-typings';
import type { Target } from '../gen/prfleet/v1/control.js';

/** Target flags as commander parses them. */
export interface TargetFlags {
  /** `--lu`: logical unit id as `prfleet devices` shows it. */
  readonly lu?: string;
  /** `--agent`: agent id. */
  readonly agent?: string;
  /** `--path`: device node on that agent. */
  readonly path?: string;
}

/** Splits a compact `agent:path` into its parts; throws InvalidArgumentError when either side is empty. */
export function parseCompactTarget(value: string): { agentId: string; path: string } {
  const colon = value.indexOf(':');
  const agentId = colon > 0 ? value.slice(0, colon) : '';
  const path = colon > 0 ? value.slice(colon + 1) : '';
  if (agentId === '' || path === '') {
    throw new InvalidArgumentError(`${value} is not a target (agent:path, e.g. host-a:/dev/sg3)`);
  }
  return { agentId, path };
}

/**
 * Builds the proto Target from the compact argument and the flags. `needsInitiator` (every PROUT) requires agent
 * and path; otherwise a lone `--lu` lets the server pick an online path. Throws InvalidArgumentError naming the
 * missing or conflicting flag.
 */
export function resolveTarget(
  compact: string | undefined,
  flags: TargetFlags,
  needsInitiator: boolean,
): Target {
  let agentId = flags.agent ?? '';
  let path = flags.path ?? '';
  if (compact !== undefined) {
    if (flags.agent !== undefined || flags.path !== undefined) {
      throw new InvalidArgumentError(
        `give the target either as ${compact} or with --agent/--path, not both`,
      );
    }
    ({ agentId, path } = parseCompactTarget(compact));
  }
  const luId = flags.lu ?? '';
  if ((agentId === '') !== (path === '')) {
    throw new InvalidArgumentError(
      agentId === '' ? '--path needs --agent' : '--agent needs --path',
    );
  }
  if (needsInitiator && (agentId === '' || path === '')) {
    throw new InvalidArgumentError(
      'this command acts as one I_T nexus: give agent:path, or --agent and --path (see `prfleet devices`)',
    );
  }
  if (!needsInitiator && luId === '' && (agentId === '' || path === '')) {
    throw new InvalidArgumentError('give --lu <id>, or agent:path (see `prfleet devices`)');
  }
  return { luId, agentId, path };
}

/** Short text for a target, e.g. `host-a:/dev/sg3 (naa.5000e11100000001)`. */
export function describeTarget(target: Target): string {
  const nexus = target.agentId !== '' ? `${target.agentId}:${target.path}` : 'any online path';
  return target.luId !== '' ? `${nexus} (${target.luId})` : nexus;
}
