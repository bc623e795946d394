/**
 * The loader as a whole: each changer's element status (READ ELEMENT STATUS with VOLTAG and DVCID through one
 * online path) next to who holds the changer and each drive. Drives belong to a changer when its data transfer
 * elements name them (DVCID identifier = the drive LU's NAA or serial); changers that cannot be read fall back to
 * the loader id agents report. Element views are cached with their read time.
 */
import {
  Finding,
  FindingKind,
  Loader,
  LoaderDrive,
  LoaderHold,
  LoaderSlot,
  Severity,
  type ListLoadersRequest,
  type ListLoadersResponse,
} from '../../gen/prfleet/v1/fleet.js';
import { durationToMs } from '../../common/command.js';
import { invalidArgument } from '../../common/errors.js';
import { printable } from '../../common/printable.js';
import { formatKey } from '../../common/key-layout.js';
import {
  decodeElementStatusData,
  ElementType,
  ScsiDecodeError,
  toHex,
  type ElementDescriptor,
  type ElementStatusData,
} from '../../scsi/index.js';
import { compare } from '../agents/index.js';
import { isOnline } from '../devices.js';
import { DEFAULT_PAGE_BYTES, fitBudget, pageOf, pageTokenAfter } from '../pages.js';
import { analyzeUnit } from './analyze.js';
import { suggest } from './suggest.js';
import type { FleetDeps } from './deps.js';
import { loadKeyIndex, type KeyIndex } from './key-index.js';
import { CommandLimiter } from './limiter.js';
import { observeUnit, sendRead, type ReadContext } from './observe.js';
import { isChanger, selectUnits, type SelectedUnit } from './selection.js';
import { requestedMs } from '../deadline.js';

/** ListLoaders defaults. */
export const LOADER_DEFAULTS = { maxAgeMs: 60_000, timeoutMs: 10_000 } as const;

/** One changer's element status as read. */
export interface ElementView {
  readonly readAt: Date;
  readonly data?: ElementStatusData;
  /** Why there is no data. */
  readonly error: string;
}

/** Element views by changer LU id, with their age; a later read replaces an earlier one. */
export class ElementViewCache {
  private readonly views = new Map<string, ElementView>();
  constructor(private readonly now: () => number = Date.now) {}

  /** The view of `luId` if it was read successfully less than `maxAgeMs` ago. */
  fresh(luId: string, maxAgeMs: number): ElementView | undefined {
    const view = this.views.get(luId);
    if (view?.data === undefined) return undefined;
    return this.now() - view.readAt.getTime() <= maxAgeMs ? view : undefined;
  }

  set(luId: string, view: ElementView): void {
    this.views.set(luId, view);
  }
}

/** Reads a changer's element status through its first online path. */
export async function readElementView(
  changer: SelectedUnit,
  ctx: ReadContext,
  now: () => number = Date.now,
): Promise<ElementView> {
  const path = changer.paths.find(isOnline);
  if (path === undefined)
    return { readAt: new Date(now()), error: 'no online path to the changer' };
  const outcome = await sendRead(
    path,
    {
      $case: 'readElementStatus',
      value: {
        elementType: 0,
        startingElement: 0,
        numberOfElements: 0,
        voltag: true,
        dvcid: true,
        allocationLength: 0,
      },
    },
    ctx,
    changer.luId,
  );
  const readAt = new Date(now());
  if (outcome.error !== undefined) return { readAt, error: outcome.error };
  try {
    // Decoded here from the device's bytes (what an agent says it decoded is not taken).
    const data = decodeElementStatusData(outcome.result.dataIn, { dvcid: true });
    const contradiction = contradictionIn(data);
    if (contradiction !== undefined)
      return { readAt, error: `contradictory element status: ${contradiction}` };
    return { readAt, data, error: '' };
  } catch (e) {
    if (!(e instanceof ScsiDecodeError)) throw e;
    return { readAt, error: `undecodable element status: ${e.message}` };
  }
}

/**
 * Why `data` cannot describe one changer, if it cannot: an element address reported twice (SMC-3 addresses are
 * unique in a changer), or two data transfer elements naming one drive. Such a view listed a phantom drive (two
 * drives at element 0x1, each with its own cartridge, `who-holds loader1:1` answering for the second) and raised
 * a finding for each; it is refused whole, as an undecodable one is.
 */
function contradictionIn(data: ElementStatusData): string | undefined {
  const addresses = new Set<number>();
  const drives = new Map<string, number>();
  for (const page of data.pages)
    for (const d of page.descriptors) {
      const at = `0x${d.address.toString(16)}`;
      if (addresses.has(d.address)) return `element address ${at} reported twice`;
      addresses.add(d.address);
      if (page.elementType !== ElementType.DATA_TRANSFER) continue;
      const drive = driveIdentifier(d);
      const first = drives.get(drive);
      if (first !== undefined)
        return `elements 0x${first.toString(16)} and ${at} name one drive (${printable(drive)})`;
      if (drive !== '') drives.set(drive, d.address);
    }
  return undefined;
}

/** The drive LU a data transfer element names: `naa.<hex>` for an NAA identifier, else by serial number. */
export function driveIdentifier(d: ElementDescriptor): string {
  const id = d.identifier;
  if (id === undefined || id.value.length === 0) return '';
  if (id.identifierType === 3 && id.codeSet === 1) return `naa.${toHex(id.value)}`;
  return String.fromCharCode(...id.value)
    .replace(/[^\x20-\x7e]/g, '')
    .trim();
}

function matchDrive(identifier: string, drives: readonly SelectedUnit[]): SelectedUnit | undefined {
  if (identifier === '') return undefined;
  return drives.find(
    (u) =>
      u.luId === identifier ||
      (u.unit.serial !== '' &&
        (identifier === u.unit.serial || identifier.endsWith(u.unit.serial))),
  );
}

/** Who holds `unit`, read from the device with its holder named through the key registry. */
async function holdOf(
  unit: SelectedUnit,
  ctx: ReadContext,
  keys: KeyIndex,
  deps: FleetDeps,
): Promise<LoaderHold> {
  const obs = await observeUnit(unit, ctx);
  if (obs.state === undefined) return LoaderHold.fromPartial({ error: obs.error });
  const analysis = analyzeUnit(obs, keys);
  const agentId = analysis.holderAgentId;
  const holderPath = analysis.paths.findIndex((p) => p.holder);
  return LoaderHold.fromPartial({
    path: holderPath < 0 ? '' : (obs.paths[holderPath]?.fleetPath.path.path ?? ''),
    reserved: obs.state.reserved,
    key: obs.state.holderKey,
    type: obs.state.type,
    agentId,
    holderOnline: agentId !== '' && deps.devices.session(agentId) !== undefined,
  });
}

/**
 * The barcode of a full element, with control characters as '.': a volume tag is 32 bytes the changer (or an
 * agent) chose, and one holding U+0000 went into findings that PostgreSQL's jsonb refused, so no finding of
 * that audit was recorded (test/adversarial/barcode-nul.test.ts).
 */
function barcodeOf(d: ElementDescriptor): string {
  return d.full ? printable(d.primaryVolumeTag?.identifier ?? '') : '';
}

/** Slots (storage, then import/export) numbered 1.. as mtx numbers them. */
function slotsOf(data: ElementStatusData): LoaderSlot[] {
  const pages = data.pages.filter(
    (p) => p.elementType === ElementType.STORAGE || p.elementType === ElementType.IMPORT_EXPORT,
  );
  const all = pages
    .flatMap((p) =>
      p.descriptors.map((d) => ({ d, mail: p.elementType === ElementType.IMPORT_EXPORT })),
    )
    .sort((a, b) => Number(a.mail) - Number(b.mail) || a.d.address - b.d.address);
  return all.map(({ d, mail }, i) =>
    LoaderSlot.fromPartial({
      elementAddress: d.address,
      number: i + 1,
      mail,
      full: d.full,
      barcode: barcodeOf(d),
    }),
  );
}

function holderName(hold: LoaderHold): string {
  return hold.agentId || formatKey(hold.key);
}

/** Same holder: the same agent when both are known, else the same key (as the audit's deadlock rule). */
function sameHolder(a: LoaderHold, b: LoaderHold): boolean {
  return (a.agentId !== '' && a.agentId === b.agentId) || a.key === b.key;
}

/** Findings where the element view and the reservations disagree (a Loader with its holds filled in). */
export function loaderElementFindings(loader: Loader): Finding[] {
  const out: Finding[] = [];
  const changer = loader.changerHold;
  for (const drive of loader.drives) {
    const hold = drive.hold;
    if (!drive.full || hold === undefined || !hold.reserved) continue;
    const what = `drive ${drive.index}${drive.luId ? ` (${drive.luId})` : ''} of loader ${loader.loaderId} holds ${drive.barcode || 'a cartridge'}`;
    if (hold.agentId !== '' && !hold.holderOnline) {
      out.push(
        Finding.fromPartial({
          kind: FindingKind.FINDING_KIND_LOADED_DRIVE_HOLDER_OFFLINE,
          severity: Severity.SEVERITY_CRITICAL,
          loaderId: loader.loaderId,
          luId: drive.luId,
          agentId: hold.agentId,
          key: hold.key,
          message: `${what} and is reserved by ${hold.agentId}, whose agent is offline: the cartridge cannot be used or unloaded`,
          suggestedAction: suggest.takeover({ agent: hold.agentId }, { loader: loader.loaderId }),
        }),
      );
    }
    if (changer?.reserved && !sameHolder(changer, hold)) {
      out.push(
        Finding.fromPartial({
          kind: FindingKind.FINDING_KIND_CARTRIDGE_STRANDED,
          severity: Severity.SEVERITY_WARNING,
          loaderId: loader.loaderId,
          luId: drive.luId,
          agentId: hold.agentId,
          key: hold.key,
          message: `${what}, reserved by ${holderName(hold)}, while the changer is reserved by ${holderName(changer)}: neither can unload it alone`,
          suggestedAction: `release the changer or the drive, or ${suggest.takeover(hold.agentId ? { agent: hold.agentId } : { key: hold.key }, { loader: loader.loaderId }, changer.agentId || undefined)}`,
        }),
      );
    }
  }
  return out;
}

interface LoaderInputs {
  readonly changer: SelectedUnit;
  readonly view: ElementView;
  readonly drives: readonly SelectedUnit[];
  readonly ctx: ReadContext;
  readonly keys: KeyIndex;
}

/** The loader id: the one agents report for the changer, else derived from the changer's LU id. */
function loaderIdOf(changer: SelectedUnit): string {
  return changer.loaderId !== '' ? changer.loaderId : `changer:${changer.luId}`;
}

/**
 * The changer's data transfer elements as drive rows (no holds yet), in element order, each with the LU its
 * identifier names (`lookup`), cartridge and source slot numbered as mtx numbers them.
 */
function elementDrives(
  data: ElementStatusData,
  lookup: (identifier: string) => string | undefined,
): LoaderDrive[] {
  const slotNumber = new Map(slotsOf(data).map((s) => [s.elementAddress, s.number]));
  return data.pages
    .filter((p) => p.elementType === ElementType.DATA_TRANSFER)
    .flatMap((p) => p.descriptors)
    .sort((a, b) => a.address - b.address)
    .map((d, index) => {
      const identifier = driveIdentifier(d);
      return LoaderDrive.fromPartial({
        elementAddress: d.address,
        index,
        luId: lookup(identifier) ?? '',
        identifier,
        full: d.full,
        barcode: barcodeOf(d),
        sourceSlot: d.full && d.svalid ? (slotNumber.get(d.sourceAddress) ?? 0) : 0,
      });
    });
}

async function buildLoader(deps: FleetDeps, input: LoaderInputs): Promise<Loader> {
  const { changer, view, drives, ctx, keys } = input;
  const data = view.data;
  const rows = data === undefined ? [] : elementDrives(data, (id) => matchDrive(id, drives)?.luId);
  // Without an element view, the drives agents report under the changer's loader id.
  if (data === undefined) {
    drives
      .filter((u) => u.loaderId !== '' && u.loaderId === changer.loaderId)
      .forEach((u, index) => rows.push(LoaderDrive.fromPartial({ index, luId: u.luId })));
  }
  const unitOf = new Map(drives.map((u) => [u.luId, u]));
  const [changerHold, ...driveHolds] = await Promise.all([
    holdOf(changer, ctx, keys, deps),
    ...rows.map((row) => {
      const unit = unitOf.get(row.luId);
      return unit === undefined ? Promise.resolve(undefined) : holdOf(unit, ctx, keys, deps);
    }),
  ]);
  rows.forEach((row, i) => (row.hold = driveHolds[i]));
  const loader = Loader.fromPartial({
    loaderId: loaderIdOf(changer),
    changerLuId: changer.luId,
    changerHold,
    drives: rows,
    slots: data === undefined ? [] : slotsOf(data),
    readAt: view.readAt,
    grouping: data === undefined ? 'reported-loader-id' : 'element-status',
    error: view.error,
  });
  loader.findings = loaderElementFindings(loader);
  return loader;
}

/**
 * ListLoaders: every selected changer with its element view (cached or read now) and holders. The selector's
 * site and labels choose the agents whose paths are used; loader_ids and lu_ids (changer or drive) choose loaders.
 */
export async function listLoaders(
  deps: FleetDeps,
  cache: ElementViewCache,
  request: ListLoadersRequest,
  signal: AbortSignal,
): Promise<ListLoadersResponse> {
  const maxAgeMs = request.maxAge ? durationToMs(request.maxAge) : LOADER_DEFAULTS.maxAgeMs;
  const timeoutMs = requestedMs(
    request.commandTimeout,
    LOADER_DEFAULTS.timeoutMs,
    'command_timeout',
  );
  if (!(maxAgeMs >= 0)) throw invalidArgument('max_age', 'must not be negative');
  const units = selectUnits(deps.devices, {
    loaderIds: [],
    luIds: [],
    site: request.selector?.site ?? '',
    labels: request.selector?.labels ?? [],
  });
  const ctx: ReadContext = {
    read: deps.commands.read,
    limiter: new CommandLimiter(64, 4),
    timeoutMs,
    signal,
  };
  const wantedLoaders = new Set(request.selector?.loaderIds ?? []);
  const wantedLus = new Set(request.selector?.luIds ?? []);
  // The page's changers are chosen before anything is read: a page reads only its own.
  const changers = units
    .filter((u) => isChanger(u) && (wantedLoaders.size === 0 || wantedLoaders.has(u.loaderId)))
    .sort((a, b) => compare(changerKey(a), changerKey(b)));
  const { page, nextPageToken } = pageOf(changers, request, {
    defaultSize: LOADER_PAGE_SIZE.default,
    maxSize: LOADER_PAGE_SIZE.max,
    budgetBytes: Number.POSITIVE_INFINITY, // the bytes are known once built: see fitLoaders
    keyOf: changerKey,
    sizeOf: () => 0,
  });
  const keys = await loadKeyIndex(deps.store);
  const drives = units.filter((u) => !isChanger(u));
  const built = await Promise.all(
    page.map(async (changer) => {
      let view = request.refresh ? undefined : cache.fresh(changer.luId, maxAgeMs);
      if (view === undefined) {
        view = await readElementView(changer, ctx);
        cache.set(changer.luId, view);
      }
      return { changer, loader: await buildLoader(deps, { changer, view, drives, ctx, keys }) };
    }),
  );
  // Which drives belong to a loader is known only from its element view: the LU filter comes after the build.
  const wanted = built.filter(
    ({ loader: l }) =>
      wantedLus.size === 0 ||
      wantedLus.has(l.changerLuId) ||
      l.drives.some((d) => wantedLus.has(d.luId)),
  );
  return fitLoaders(wanted, changers, nextPageToken, deps.pageBytes ?? DEFAULT_PAGE_BYTES);
}

/** Loaders per page when page_size is 0 (each is a changer read, unless its view is cached), and at most. */
const LOADER_PAGE_SIZE = { default: 100, max: 1000 } as const;

/** A changer's place in the listing: by loader id, then changer LU (two changers may claim one loader id). */
const changerKey = (u: SelectedUnit) => `${u.loaderId}\u0000${u.luId}`;

/**
 * The built loaders that fit the byte budget (at least one); when some do not, the next page starts after the
 * last one kept (its changer's place in `changers`, the whole sorted listing).
 */
function fitLoaders(
  built: readonly { changer: SelectedUnit; loader: Loader }[],
  changers: readonly SelectedUnit[],
  nextPageToken: string,
  budgetBytes: number,
): ListLoadersResponse {
  const kept = fitBudget(built, budgetBytes, ({ loader }) => Loader.encode(loader).finish().length);
  const last = kept.at(-1);
  if (kept.length === built.length || last === undefined)
    return { loaders: kept.map((b) => b.loader), nextPageToken };
  const after = changers.indexOf(last.changer) + 1;
  return {
    loaders: kept.map((b) => b.loader),
    nextPageToken: pageTokenAfter(changerKey(last.changer), after),
  };
}

/** What the audit knows of one LU's reservation (LoaderDigest's fields). */
export interface HoldDigest {
  readonly luId: string;
  readonly reserved: boolean;
  readonly holderKey: bigint;
  readonly holderAgentId: string;
}

/**
 * The element findings of the audit: a changer's view joined with the reservations the audit read. Drives are
 * matched by NAA identifier to LU ids (the audit has no serial numbers to match ASCII identifiers with).
 */
export function auditElementFindings(
  changer: SelectedUnit,
  view: ElementView,
  digests: ReadonlyMap<string, HoldDigest>,
  isConnected: (agentId: string) => boolean,
): Finding[] {
  if (view.data === undefined) return [];
  const holdOfDigest = (d: HoldDigest | undefined): LoaderHold =>
    LoaderHold.fromPartial({
      reserved: d?.reserved ?? false,
      key: d?.holderKey ?? 0n,
      agentId: d?.holderAgentId ?? '',
      holderOnline: d !== undefined && d.holderAgentId !== '' && isConnected(d.holderAgentId),
    });
  const drives = elementDrives(view.data, (id) => digests.get(id)?.luId);
  for (const drive of drives) {
    const digest = digests.get(drive.luId);
    if (digest !== undefined) drive.hold = holdOfDigest(digest);
  }
  return loaderElementFindings(
    Loader.fromPartial({
      loaderId: loaderIdOf(changer),
      changerLuId: changer.luId,
      changerHold: holdOfDigest(digests.get(changer.luId)),
      drives,
    }),
  );
}
