import type {
  Designator,
  DeviceCapabilities,
  Path,
  TransportId,
} from '../../gen/prfleet/v1/scsi.js';

// Every connected agent's paths stay in memory (and, with a shared inventory, on every instance). Decoded as
// they arrive, each path carries its own copy of what is the same for every host that sees the LU (designators,
// INQUIRY strings) or has the same device profile (capabilities), and its byte fields are views into 8 KiB
// Buffer pool slabs that stay alive as long as any view does. compactPaths keeps one frozen copy of those parts
// (byte fields copied out of the pool) shared by every path that has them; per path remain only what differs
// (path, initiator port, relative target port, online) and an object of its own.

/** Interned values, at most this many of each kind (a fleet has far fewer LUs and profiles); then restarted. */
const INTERN_LIMIT = 50_000;
const internedStrings = new Map<string, string>();
const internedDesignators = new Map<string, readonly Designator[]>();
const internedCapabilities = new Map<string, DeviceCapabilities>();

function internIn<T>(table: Map<string, T>, key: string, make: () => T): T {
  const found = table.get(key);
  if (found !== undefined) return found;
  if (table.size >= INTERN_LIMIT) table.clear();
  const value = make();
  table.set(key, value);
  return value;
}

/** `text` as one shared string (protobuf decoding makes a new string for every message). */
function internString(text: string): string {
  return text === '' ? text : internIn(internedStrings, text, () => text);
}

/** A Buffer of its own, exactly `bytes` long (not a view into a pool slab). */
function ownBytes(bytes: Buffer): Buffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return Buffer.from(copy.buffer, 0, copy.length);
}

function designatorKey(d: Designator): string {
  return `${d.codeSet},${d.association},${d.designatorType},${d.protocolId ?? ''},${d.value.toString('hex')},${d.display}`;
}

function internDesignators(designators: readonly Designator[]): Designator[] {
  if (designators.length === 0) return designators as Designator[];
  const key = designators.map(designatorKey).join('|');
  return internIn(internedDesignators, key, () =>
    Object.freeze(
      designators.map((d) =>
        Object.freeze({ ...d, value: ownBytes(d.value), display: internString(d.display) }),
      ),
    ),
  ) as Designator[];
}

function internCapabilities(c: DeviceCapabilities | undefined): DeviceCapabilities | undefined {
  if (c === undefined) return undefined;
  const key = JSON.stringify(c);
  return internIn(internedCapabilities, key, () =>
    Object.freeze({
      ...c,
      profile: internString(c.profile),
      proutActions: Object.freeze([...c.proutActions]) as DeviceCapabilities['proutActions'],
      prinActions: Object.freeze([...c.prinActions]) as DeviceCapabilities['prinActions'],
      types: Object.freeze([...c.types]) as DeviceCapabilities['types'],
    }),
  );
}

function compactTransportId(t: TransportId | undefined): TransportId | undefined {
  if (t?.id?.$case !== 'raw') return t;
  return { ...t, id: { $case: 'raw', value: ownBytes(t.id.value) } };
}

/**
 * `paths` with what many agents' paths have in common stored once (see above): equal to the input field by
 * field; the shared parts (designators, capabilities) are frozen, so code that would modify them fails loudly.
 */
export function compactPaths(paths: readonly Path[]): Path[] {
  return paths.map((p) => ({
    ...p,
    path: internString(p.path),
    vendor: internString(p.vendor),
    product: internString(p.product),
    revision: internString(p.revision),
    serial: internString(p.serial),
    luId: internString(p.luId),
    loaderId: internString(p.loaderId),
    designators: internDesignators(p.designators),
    initiatorPort: compactTransportId(p.initiatorPort),
    capabilities: internCapabilities(p.capabilities),
  }));
}
