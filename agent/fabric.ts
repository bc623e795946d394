import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import * as z from '../src/common/zod-mini.js';
import {
  createEmulator,
  DEFAULT_TARGET_PORTS,
  type Emulator,
  type EmulatedLogicalUnit,
  type ElementLayoutSpec,
  type ProfileName,
} from '../src/emulator/index.js';
import { formatTransportId, parseTransportId, type TransportId } from '../src/scsi/index.js';
import { createEmulatedTransport, type EmulatedTransport } from './transport/emulated.js';

/** A fabric file that cannot be used: names the field (e.g. `hosts[0].paths[1].lu`) and why. */
export class FabricError extends Error {
  override readonly name = 'FabricError';
  constructor(
    message: string,
    /** Path of the bad field in the spec, e.g. `hosts[1].paths[0].initiatorPort`. */
    readonly field: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const PROFILES = [
  'spc4',
  'lio',
  'superloader-changer',
  'lto-drive',
] as const satisfies readonly ProfileName[];

const name = () =>
  z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-"'));
const text = () => z.string().check(z.minLength(1));
const integer = (min: number, max?: number) =>
  z.int().check(z.minimum(min), ...(max === undefined ? [] : [z.maximum(max)]));

const LogicalUnitSchema = z.strictObject({
  id: name(),
  profile: z.enum(PROFILES),
  serial: z.string().check(z.minLength(1), z.maxLength(64)),
  naa: z.optional(
    z
      .string()
      .check(z.regex(/^(0x)?[0-9a-fA-F]{16}$/, 'NAA as 16 hex digits, e.g. 0x5000e11100000001')),
  ),
  vendor: z.optional(z.string().check(z.maxLength(8))),
  product: z.optional(z.string().check(z.maxLength(16))),
  revision: z.optional(z.string().check(z.maxLength(4))),
  targetPorts: z.optional(z.array(integer(1, 0xffff)).check(z.minLength(1))),
  maxRegistrations: z.optional(integer(1, 4096)),
  lun: z.optional(integer(0, 0x3fff)),
  acl: z.optional(z.array(text())),
});

const BarcodeSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9._-]{1,32}$/, 'a barcode: up to 32 letters or digits'));

/** The cartridges of a loader: slots (1-based numbers) and drives (0-based, in `drives` order). */
const MediaSchema = z.strictObject({
  slots: z._default(integer(1, 1024), 16),
  mailSlot: z._default(z.boolean(), true),
  cartridges: z._default(
    z.record(z.string().check(z.regex(/^[1-9][0-9]*$/, 'a slot number')), BarcodeSchema),
    {},
  ),
  loaded: z._default(
    z.record(
      z.string().check(z.regex(/^[0-9]+$/, 'a drive index')),
      z.strictObject({ slot: integer(1), barcode: BarcodeSchema }),
    ),
    {},
  ),
});

const LoaderSchema = z.strictObject({
  id: text(),
  changer: LogicalUnitSchema,
  drives: z._default(z.array(LogicalUnitSchema), []),
  media: z.optional(MediaSchema),
});

const PathSchema = z.strictObject({
  node: text(),
  lu: text(),
  initiatorPort: text(),
  relativeTargetPort: z._default(integer(1, 0xffff), 1),
});

const HostSchema = z.strictObject({
  id: name(),
  site: z._default(z.string(), ''),
  labels: z._default(z.record(z.string(), z.string()), {}),
  initiatorPorts: z.array(text()).check(z.minLength(1)),
  paths: z._default(z.array(PathSchema), []),
});

const FabricSchema = z.strictObject({
  loaders: z.array(LoaderSchema).check(z.minLength(1)),
  hosts: z.array(HostSchema).check(z.minLength(1)),
});

/** A validated fabric spec: loaders (changer + drive LUs) and hosts with their paths. */
export type FabricSpec = z.output<typeof FabricSchema>;
/** One logical unit of a fabric spec. */
export type FabricLogicalUnitSpec = z.output<typeof LogicalUnitSchema>;
/** One host of a fabric spec. */
export type FabricHostSpec = z.output<typeof HostSchema>;
/** What a fabric file holds before validation (YAML/JSON). */
export type FabricInput = z.input<typeof FabricSchema>;

function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

/**
 * Validates a fabric spec object (as parsed from YAML/JSON). Throws FabricError naming the first bad field:
 * schema errors, duplicate ids, a path to an unknown LU, an initiator port the host does not have, a relative
 * target port the LU does not have, the same initiator port on two hosts.
 */
export function parseFabric(input: unknown): FabricSpec {
  if (validated.has(input as object)) return input as FabricSpec;
  const parsed = FabricSchema.safeParse(input);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const field = first ? issuePath(first.path) : '(root)';
    throw new FabricError(`invalid fabric: ${first?.message ?? 'bad input'} at ${field}`, field, {
      cause: parsed.error,
    });
  }
  const spec = parsed.data;

  const lus = new Map<string, { spec: FabricLogicalUnitSpec; loaderId: string }>();
  const loaderIds = new Set<string>();
  spec.loaders.forEach((loader, li) => {
    const all = [
      { lu: loader.changer, field: `loaders[${li}].changer.id` },
      ...loader.drives.map((lu, di) => ({ lu, field: `loaders[${li}].drives[${di}].id` })),
    ];
    if (loaderIds.has(loader.id)) {
      throw new FabricError(
        `invalid fabric: duplicate loader id ${loader.id}`,
        `loaders[${li}].id`,
      );
    }
    loaderIds.add(loader.id);
    for (const { lu, field } of all) {
      if (lus.has(lu.id)) throw new FabricError(`invalid fabric: duplicate LU id ${lu.id}`, field);
      lus.set(lu.id, { spec: lu, loaderId: loader.id });
      lu.acl?.forEach((text, ai) =>
        canonicalPort(text, `${field.slice(0, -'.id'.length)}.acl[${ai}]`),
      );
    }
  });

  const portOwner = new Map<string, string>();
  const hostIds = new Set<string>();
  spec.hosts.forEach((host, hi) => {
    if (hostIds.has(host.id)) {
      throw new FabricError(`invalid fabric: duplicate host id ${host.id}`, `hosts[${hi}].id`);
    }
    hostIds.add(host.id);
    const ports = new Set<string>();
    host.initiatorPorts.forEach((text, pi) => {
      const field = `hosts[${hi}].initiatorPorts[${pi}]`;
      const canonical = canonicalPort(text, field);
      const owner = portOwner.get(canonical);
      if (owner !== undefined) {
        throw new FabricError(
          `invalid fabric: initiator port ${canonical} already belongs to host ${owner}`,
          field,
        );
      }
      portOwner.set(canonical, host.id);
      ports.add(canonical);
    });
    const nodes = new Set<string>();
    const nexuses = new Set<string>();
    host.paths.forEach((path, pi) => {
      const at = `hosts[${hi}].paths[${pi}]`;
      if (nodes.has(path.node)) {
        throw new FabricError(
          `invalid fabric: host ${host.id} has node ${path.node} twice`,
          `${at}.node`,
        );
      }
      nodes.add(path.node);
      const lu = lus.get(path.lu);
      if (!lu) throw new FabricError(`invalid fabric: no LU with id ${path.lu}`, `${at}.lu`);
      const port = canonicalPort(path.initiatorPort, `${at}.initiatorPort`);
      if (!ports.has(port)) {
        throw new FabricError(
          `invalid fabric: initiator port ${port} is not one of host ${host.id}'s initiatorPorts`,
          `${at}.initiatorPort`,
        );
      }
      const targetPorts = lu.spec.targetPorts ?? DEFAULT_TARGET_PORTS;
      if (!targetPorts.includes(path.relativeTargetPort)) {
        throw new FabricError(
          `invalid fabric: LU ${path.lu} has no relative target port ${path.relativeTargetPort} (has ${targetPorts.join(', ')})`,
          `${at}.relativeTargetPort`,
        );
      }
      const nexus = `${port}|${path.relativeTargetPort}|${path.lu}`;
      if (nexuses.has(nexus)) {
        throw new FabricError(
          `invalid fabric: ${path.node} repeats the I_T nexus ${port} × port ${path.relativeTargetPort} to ${path.lu}`,
          `${at}.node`,
        );
      }
      nexuses.add(nexus);
    });
  });
  validated.add(spec);
  return spec;
}

/** Specs parseFabric returned (frozen-by-convention: nothing changes a parsed spec), not validated twice. */
const validated = new WeakSet<object>();

function canonicalPort(text: string, field: string): string {
  try {
    return formatTransportId(parseTransportId(text));
  } catch (e) {
    throw new FabricError(`invalid fabric: ${(e as Error).message}`, field, { cause: e });
  }
}

/**
 * Loads and validates a fabric from a YAML or JSON file (JSON is YAML), or validates an object already parsed.
 * Throws FabricError naming the field; a YAML syntax error names the line.
 */
export async function loadFabric(source: string | object): Promise<FabricSpec> {
  if (typeof source !== 'string') return parseFabric(source);
  let text: string;
  try {
    text = await readFile(source, 'utf8');
  } catch (e) {
    throw new FabricError(`cannot read fabric file ${source}: ${(e as Error).message}`, '(file)', {
      cause: e,
    });
  }
  let data: unknown;
  try {
    // JSON is YAML, but JSON.parse reads a generated 10,000-LU fabric ~50× faster; anything it refuses (YAML,
    // or broken JSON, whose error then names the line) goes to the YAML parser.
    data = parseJsonOrYaml(text);
  } catch (e) {
    throw new FabricError(`invalid fabric file ${source}: ${(e as Error).message}`, '(file)', {
      cause: e,
    });
  }
  return parseFabric(data);
}

function parseJsonOrYaml(text: string): unknown {
  const first = text.trimStart()[0];
  if (first === '{' || first === '[') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not plain JSON: the YAML parser decides (and explains)
    }
  }
  return parseYaml(text);
}

/** One path of an emulated host, resolved: node name, initiator port, LU and its loader. */
export interface EmulatedHostPath {
  /** Device node name, e.g. "/dev/sg0". */
  readonly path: string;
  /** Initiator port of the nexus. */
  readonly initiatorPort: TransportId;
  /** Relative target port of the nexus. */
  readonly relativeTargetPort: number;
  /** Fabric id of the LU. */
  readonly logicalUnitId: string;
  /** Loader (chassis) the LU belongs to. */
  readonly loaderId: string;
}

/** One host's view of an emulated fabric: its identity, its paths and a transport that reaches them. */
export interface EmulatedHost {
  /** Host (agent) id. */
  readonly id: string;
  /** Site from the spec. */
  readonly site: string;
  /** Labels from the spec. */
  readonly labels: Readonly<Record<string, string>>;
  /** The host's paths in spec order. */
  readonly paths: readonly EmulatedHostPath[];
  /** Transport over this host's nexuses. */
  readonly transport: EmulatedTransport;
}

/** One emulator with every LU of the spec, and a transport view per host. */
export interface EmulatedFabric {
  /** The validated spec. */
  readonly spec: FabricSpec;
  /** The single emulator every host's transport talks to. */
  readonly emulator: Emulator;
  /** Every host, in spec order. */
  readonly hosts: readonly EmulatedHost[];
  /** The host with this id; throws FabricError when there is none. */
  host(id: string): EmulatedHost;
  /** The LU with this fabric id; throws FabricError when there is none. */
  logicalUnit(id: string): EmulatedLogicalUnit;
  /** Closes every host transport. */
  close(): void;
}

/** Options for {@link createEmulatedFabric}. */
export interface EmulatedFabricOptions {
  /** Per-command latency of every host transport, ms. @default 0 */
  readonly latencyMs?: number;
  /** Clock for the emulator (ms). @default Date.now */
  readonly clock?: () => number;
}

function aclOnEveryPort(
  acl: readonly string[],
  ports: readonly number[] = DEFAULT_TARGET_PORTS,
): Record<number, TransportId[]> {
  const initiators = acl.map((t) => parseTransportId(t));
  return Object.fromEntries(ports.map((p) => [p, initiators]));
}

/**
 * Builds ONE emulator holding every LU of the spec and one transport per host over that host's nexuses, so hosts
 * really contend for the same LUs. Accepts a validated spec or raw input (validated here).
 */
export function createEmulatedFabric(
  input: FabricSpec | FabricInput,
  options: EmulatedFabricOptions = {},
): EmulatedFabric {
  const spec = parseFabric(input);
  const emulator = createEmulator(options.clock ? { clock: options.clock } : {});
  const loaderOf = new Map<string, string>();
  const naaOf = (lu: FabricLogicalUnitSpec) =>
    lu.naa === undefined ? undefined : BigInt(lu.naa.startsWith('0x') ? lu.naa : `0x${lu.naa}`);
  for (const loader of spec.loaders) {
    for (const lu of [loader.changer, ...loader.drives]) {
      const naa = naaOf(lu);
      emulator.addLogicalUnit({
        id: lu.id,
        profile: lu.profile,
        serial: lu.serial,
        ...(naa === undefined ? {} : { naa }),
        // The changer's data transfer elements name the loader's drives (DVCID), by their NAA.
        ...(lu === loader.changer ? { elements: elementsOf(loader, naaOf) } : {}),
        ...(lu.vendor === undefined ? {} : { vendor: lu.vendor }),
        ...(lu.product === undefined ? {} : { product: lu.product }),
        ...(lu.revision === undefined ? {} : { revision: lu.revision }),
        ...(lu.targetPorts === undefined ? {} : { targetPorts: lu.targetPorts }),
        ...(lu.maxRegistrations === undefined ? {} : { maxRegistrations: lu.maxRegistrations }),
        ...(lu.lun === undefined ? {} : { lun: lu.lun }),
        // The fabric file's ACL is one list every target port of the LU knows.
        ...(lu.acl === undefined ? {} : { acl: aclOnEveryPort(lu.acl, lu.targetPorts) }),
        // The LUs of one loader share a SCSI target device, so REPORT LUNS lists the changer and its drives.
        target: loader.id,
      });
      loaderOf.set(lu.id, loader.id);
    }
  }
  const logicalUnit = (id: string): EmulatedLogicalUnit => {
    const lu = emulator.logicalUnit(id);
    if (!lu) throw new FabricError(`no LU with id ${id}`, 'lu');
    return lu;
  };
  const hosts: EmulatedHost[] = spec.hosts.map((host) => {
    const paths: EmulatedHostPath[] = host.paths.map((p) => ({
      path: p.node,
      initiatorPort: parseTransportId(p.initiatorPort),
      relativeTargetPort: p.relativeTargetPort,
      logicalUnitId: p.lu,
      loaderId: loaderOf.get(p.lu) ?? '',
    }));
    const transport = createEmulatedTransport(
      paths.map((p) => ({
        path: p.path,
        logicalUnit: logicalUnit(p.logicalUnitId),
        initiator: { transportId: p.initiatorPort, relativeTargetPort: p.relativeTargetPort },
      })),
      options.latencyMs === undefined ? {} : { latencyMs: options.latencyMs },
    );
    return { id: host.id, site: host.site, labels: host.labels, paths, transport };
  });
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  return {
    spec,
    emulator,
    hosts,
    host(id) {
      const host = hostById.get(id);
      if (!host) {
        throw new FabricError(
          `no host ${id} in the fabric (hosts: ${hosts.map((h) => h.id).join(', ')})`,
          'host',
        );
      }
      return host;
    },
    logicalUnit,
    close() {
      for (const host of hosts) host.transport.close();
    },
  };
}

/** The changer's element layout from the loader's media and drives. */
function elementsOf(
  loader: FabricSpec['loaders'][number],
  naaOf: (lu: FabricLogicalUnitSpec) => bigint | undefined,
): ElementLayoutSpec {
  const media = loader.media;
  return {
    drives: loader.drives.map((d) => naaOf(d)),
    ...(media === undefined
      ? {}
      : {
          slots: media.slots,
          mailSlot: media.mailSlot,
          cartridges: Object.fromEntries(
            Object.entries(media.cartridges).map(([slot, barcode]) => [Number(slot), barcode]),
          ),
          loaded: Object.fromEntries(
            Object.entries(media.loaded).map(([drive, load]) => [Number(drive), load]),
          ),
        }),
  };
}
