import { formatKey } from '../../scsi/keys.js';
import type { KeyRecord, KeyRegistry } from '../store/key-registry.js';
import type { OperatorKeyCheck, OperatorKeyVerdict } from './middleware.js';

/**
 * The key registry behind `isOperatorKeyAllowed`: an operator may REGISTER, RESERVE and RELEASE only with keys
 * whose registry owner is the operator's token name (exact match, as `prfleet registry allocate --owner` and
 * `prfleet-tokens create --name` spelled them). Refusals name the key and why:
 *
 * - not in the registry: an admin allocates (or adopts) it first, with the operator as owner;
 * - another owner: the message names that owner;
 * - revoked: may still be given up (the current key of a REGISTER that unregisters or replaces it, the key of a
 *   RELEASE), never used to register or reserve.
 *
 * Admins are never asked (the middleware checks operators only). Each check is one registry lookup by key.
 */
export function createRegistryKeyCheck(keys: Pick<KeyRegistry, 'get'>): OperatorKeyCheck {
  return async (principal, key, use): Promise<OperatorKeyVerdict> => {
    const record = await keys.get(key);
    const refuse = (why: string): OperatorKeyVerdict => ({
      allowed: false,
      reason: `${principal.name} may not use key ${formatKey(key)} (${use.method}): ${why}`,
    });
    if (record === undefined) {
      return refuse(
        `it is not in the key registry; an admin allocates keys to an owner (prfleet registry allocate --agent <host> --site <site> --owner ${principal.name})`,
      );
    }
    if (record.owner !== principal.name) {
      return refuse(
        `the key registry assigns it to ${record.owner}${describeHolder(record)}, not to ${principal.name}`,
      );
    }
    if (record.revokedAt !== null && use.purpose === 'acquire') {
      const by = record.revokedBy === null ? '' : ` by ${record.revokedBy}`;
      const why = record.revokeReason === null ? '' : ` (${record.revokeReason})`;
      return refuse(
        `it was revoked ${record.revokedAt.toISOString()}${by}${why}; it may only be unregistered or released`,
      );
    }
    return true;
  };
}

/** ` (backup key of agent host-a at dc1)`, or '' when the record names no agent. */
function describeHolder(record: KeyRecord): string {
  if (record.agentId === null) return '';
  return ` (${record.purpose} key of agent ${record.agentId}${record.site === null ? '' : ` at ${record.site}`})`;
}
