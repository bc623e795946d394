import type { CallContext } from 'nice-grpc-common';
import {
  DecodeKeyResponse,
  KeyRecord as KeyRecordProto,
  type AllocateKeyRequest,
  type AllocateKeyResponse,
  type DecodeKeyRequest,
  type ListKeysRequest,
  type ListKeysResponse,
  type RevokeKeyRequest,
  type RevokeKeyResponse,
} from '../../../gen/prfleet/v1/fleet.js';
import { invalidArgument } from '../../../common/errors.js';
import { formatKey } from '../../../common/key-layout.js';
import { actorOnBehalfOf, defaultPrincipalOf } from '../../history.js';
import { DEFAULT_PAGE_BYTES, LIST_PAGE_SIZE, pageOf } from '../../pages.js';
import { compare } from '../../agents/index.js';
import type { KeyRecord } from '../../store/index.js';
import type { FleetDeps } from '../deps.js';
import { foreignOwner, keyRecordToProto, ownerOfRecord } from '../key-index.js';
import { mapStore, purposeOf } from './store-errors.js';
import { unknownAgentWarnings, unknownSiteWarnings } from './warnings.js';

/** AllocateKey: a new key from the registry, with warnings for an agent or site this server does not know. */
export async function allocateKey(
  deps: FleetDeps,
  request: AllocateKeyRequest,
): Promise<AllocateKeyResponse> {
  const { store, log } = deps;
  const purpose = purposeOf(request.purpose, 'purpose');
  const warnings = [
    ...unknownAgentWarnings(deps, [request.agentId]),
    ...unknownSiteWarnings(deps, request.site),
  ];
  const record = await mapStore(() =>
    store.keys.allocate({
      site: request.site,
      agentId: request.agentId,
      purpose,
      owner: request.owner,
      ...(request.note === '' ? {} : { note: request.note }),
    }),
  );
  log.info(
    {
      key: formatKey(record.key),
      agentId: record.agentId,
      site: record.site,
      purpose,
      owner: record.owner,
    },
    'key allocated',
  );
  return { key: keyRecordToProto(record), warnings };
}

/** ListKeys: the registry's keys, filtered. */
export async function listKeys(
  deps: FleetDeps,
  request: ListKeysRequest,
): Promise<ListKeysResponse> {
  const { store } = deps;
  const purpose = request.purpose === '' ? undefined : purposeOf(request.purpose, 'purpose');
  const records = await mapStore(() =>
    store.keys.list({
      ...(request.agentId === '' ? {} : { agentId: request.agentId }),
      ...(request.site === '' ? {} : { site: request.site }),
      ...(purpose === undefined ? {} : { purpose }),
      includeRevoked: request.includeRevoked,
    }),
  );
  // Oldest first, as the store lists them, at the millisecond a Date keeps (the page token's order).
  const keyOf = (r: KeyRecord) => `${r.createdAt.toISOString()}${r.formatted}`;
  const sorted = [...records].sort((a, b) => compare(keyOf(a), keyOf(b)));
  const { page, nextPageToken } = pageOf(sorted, request, {
    defaultSize: LIST_PAGE_SIZE.default,
    maxSize: LIST_PAGE_SIZE.max,
    budgetBytes: deps.pageBytes ?? DEFAULT_PAGE_BYTES,
    keyOf,
    sizeOf: (r) => KeyRecordProto.encode(keyRecordToProto(r)).finish().length,
  });
  return { keys: page.map(keyRecordToProto), nextPageToken };
}

/** RevokeKey: marks a key revoked (the audit then reports it wherever it is still registered). */
export async function revokeKey(
  deps: FleetDeps,
  request: RevokeKeyRequest,
  ctx: CallContext,
): Promise<RevokeKeyResponse> {
  const { store, log } = deps;
  if (request.key === 0n) throw invalidArgument('key', 'required (0 is "no key")');
  if (request.revokedBy === '') throw invalidArgument('revoked_by', 'required');
  const by = actorOnBehalfOf(defaultPrincipalOf(ctx), request.revokedBy);
  const record = await mapStore(() =>
    store.keys.revoke(request.key, {
      by,
      ...(request.reason === '' ? {} : { reason: request.reason }),
    }),
  );
  log.info({ key: formatKey(record.key), by, reason: request.reason }, 'key revoked');
  return { key: keyRecordToProto(record) };
}

/** DecodeKey: whose key this is (registry record) or what its layout suggests. */
export async function decodeKey(
  deps: FleetDeps,
  request: DecodeKeyRequest,
): Promise<DecodeKeyResponse> {
  const reading = await mapStore(() => deps.store.keys.decodeKey(request.key));
  if (reading.kind === 'registry') {
    return DecodeKeyResponse.fromPartial({
      owner: ownerOfRecord(reading.record),
      record: keyRecordToProto(reading.record),
      layout: 'registry',
      confidence: 'pattern',
    });
  }
  return DecodeKeyResponse.fromPartial({
    owner: foreignOwner(request.key),
    layout: reading.kind,
    confidence: reading.confidence,
  });
}
