/**
 * Changer part of the in-VM suite: a real kernel medium changer. LIO exports no changer from its stock backstores,
 * so a TCM-User backstore (target_core_user) hands the commands LIO's core does not emulate to the project's own
 * handler (test/lio/tcmu-changer.c, the element model in C), while PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE,
 * the reservation checks and unit attentions stay LIO core's. The LU is linked as LUN 1 into the disk LU's
 * tcm_loop TPGs: three nexuses, /dev/sg nodes of type 8. Then: discovery, mtx against prfleet's READ ELEMENT
 * STATUS through the agent (before and after MOVE MEDIUM), sg_persist against prfleet on PR state, and the PR
 * conformance scenarios that apply to a changer, each with a differential check against an emulated twin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listScsiGenericNodes } from '../../../agent/sysfs.js';
import { createSgioTransport, SGIO_ALLOWED_OPCODES } from '../../../agent/transport/sgio.js';
import type { ScsiDevice } from '../../../agent/transport/transport.js';
import { runScenario, SCENARIOS, type Scenario } from '../../../src/conformance/index.js';
import {
  createEmulator,
  createTranscriptRecorder,
  type EmulatedLogicalUnit,
  type Initiator,
} from '../../../src/emulator/index.js';
import {
  decodeDeviceIdentification,
  decodeFullStatus,
  decodeReadKeys,
  encodeInquiry,
  encodePrin,
  encodeProut,
  formatTransportId,
  fromHex,
  toHex,
  type ScsiRequest,
  type TransportId,
} from '../../../src/scsi/index.js';
import {
  CHANGER_CHECKS,
  CHANGER_SCENARIO_PREFIX,
  type ChangerCheckName,
} from '../changer-checks.js';
import { compareTranscripts, formatMismatch } from '../differential.js';
import { formatLine, type ScenarioLine } from '../protocol.js';
import { runChangerGrpcChecks } from './changer-grpc.js';

/** tcm_loop WWNs: the disk LU's (lio-setup.sh) and the changer's own (one SCSI host each). */
const DISK_WWN = 'naa.5001405000000001';
const CHANGER_WWN = 'naa.5001405000000002';
/** The handler's NAA (VPD 83h) and serial: the changer's LU id is naa.<this>. */
const CHANGER_NAA = '5001405c0000c001';
const CHANGER_SERIAL = 'prfleet-changer-0001';
/** Backstore name and dev_config: the UIO device is named tcm-user/<hba>/<name>/<dev_config>. */
const BACKSTORE = 'user_1/prfleet_changer';
const DEV_CONFIG = 'prfleet/changer';

/** Options of runChangerPart. */
export interface ChangerPartOptions {
  /** The compiled handler (tcmu-changer.c), in the host root the guest runs chrooted in. */
  readonly handler: string;
  /** Nexuses (TPGs 1..N of lio-setup.sh). @default 3 */
  readonly nexuses?: number;
  /** Out dir for the handler's log and the transcripts. */
  readonly outDir?: string;
  readonly print: (line: string) => void;
}

interface ChangerLu {
  paths: string[];
  initiators: TransportId[];
  /** The disk LU's NAA (hex), which the changer's data transfer element names (DVCID). */
  driveNaa: string;
  diskPaths: string[];
  handler: ChildProcess;
  /** The handler's stderr (one line per command with --verbose). */
  log: string[];
}

async function hctlNodes(): Promise<Map<string, { path: string; type: number }>> {
  const nodes = await listScsiGenericNodes({ includeDisks: true });
  return new Map(nodes.map((n) => [n.hctl, { path: n.path, type: n.peripheralDeviceType }]));
}

/** VPD 83h NAA of the LU behind `path`, as hex. */
async function naaOf(path: string): Promise<string> {
  const device = await createSgioTransport().open(path);
  try {
    const r = await device.execute({
      cdb: encodeInquiry({ evpd: true, pageCode: 0x83, allocationLength: 252 }),
      dataInLength: 252,
      timeoutMs: 10_000,
    });
    const naa = decodeDeviceIdentification(r.dataIn).find(
      (d) => d.association === 0 && d.designatorType === 3,
    );
    if (naa === undefined) throw new Error(`${path}: no NAA designator`);
    return toHex(naa.value);
  } finally {
    await device.close();
  }
}

/** Starts the handler on the enabled backstore's UIO device; resolves once it serves. */
async function startHandler(
  binary: string,
  driveNaa: string,
): Promise<{ handler: ChildProcess; log: string[] }> {
  const args = ['--match', `/prfleet_changer/${DEV_CONFIG}`, '--naa', CHANGER_NAA];
  args.push('--serial', CHANGER_SERIAL, '--drive', driveNaa, '--verbose');
  args.push('--cartridge', '2=ABC002L8', '--cartridge', '3=ABC003L8', '--cartridge', '16=CLN001L1');
  args.push('--loaded', '0=1:ABC001L8');
  const handler = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  handler.stderr?.on('data', (d: Buffer) => log.push(d.toString()));
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the handler did not start: ${log.join('')}`)),
      20_000,
    );
    handler.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('TCMU-CHANGER ready')) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    handler.on('exit', (code) =>
      reject(new Error(`the handler exited (${code}): ${log.join('')}`)),
    );
  });
  return { handler, log };
}

/**
 * Backstore, handler, then LUN 0 of TPGs 1..N on a tcm_loop WWN of its own (its own SCSI host and initiator
 * ports, so the disk LU's TPGs keep one LUN: REPORT LUNS there stays as the disk scenarios expect); waits for
 * the changer's sg nodes.
 */
async function setUpChanger(options: ChangerPartOptions): Promise<ChangerLu> {
  const cfs = '/sys/kernel/config/target';
  const tpgs = Array.from({ length: options.nexuses ?? 3 }, (_, i) => i + 1);
  const address = (wwn: string) =>
    readFile(join(cfs, 'loopback', wwn, 'tpgt_1', 'address'), 'utf8');
  const diskHost = (await address(DISK_WWN)).split(':')[0];
  const before = await hctlNodes();
  const diskPaths = tpgs.flatMap((t) => before.get(`${diskHost}:0:${t}:0`)?.path ?? []);
  const driveNaa = await naaOf(diskPaths[0] ?? '/dev/sg0');
  const backstore = join(cfs, 'core', BACKSTORE);
  await mkdir(backstore, { recursive: true });
  // A size as target_core_user expects one; nothing reads blocks of a changer.
  await writeFile(join(backstore, 'control'), `dev_config=${DEV_CONFIG},dev_size=1048576`);
  await writeFile(join(backstore, 'enable'), '1');
  const { handler, log } = await startHandler(options.handler, driveNaa);
  // The handler answers the scan's INQUIRY: it must run before the LUN is linked (tcm_loop scans at link time),
  // and the nexus must exist before that too.
  const initiators: TransportId[] = [];
  for (const t of tpgs) {
    const tpg = join(cfs, 'loopback', CHANGER_WWN, `tpgt_${t}`);
    await mkdir(join(tpg, 'lun', 'lun_0'), { recursive: true });
    const nexus = `naa.50014050000000b${t}`;
    await writeFile(join(tpg, 'nexus'), nexus);
    await symlink(backstore, join(tpg, 'lun', 'lun_0', 'changer'));
    initiators.push({ protocol: 'sas', sasAddress: BigInt(`0x${nexus.slice(4)}`) });
  }
  const host = (await address(CHANGER_WWN)).split(':')[0];
  for (let i = 0; ; i++) {
    const nodes = await hctlNodes();
    const found = tpgs.map((t) => nodes.get(`${host}:0:${t}:0`));
    if (found.every((n) => n !== undefined && n.type === 8)) {
      const paths = found.map((n) => n?.path ?? '');
      return { paths, initiators, driveNaa, diskPaths, handler, log };
    }
    if (i > 400)
      throw new Error(`changer sg nodes: ${found.map((n) => JSON.stringify(n)).join(' ')}`);
    await sleep(50);
  }
}

/** Runs the checks and the scenarios; prints one line each; returns the number of failures. */
export async function runChangerPart(options: ChangerPartOptions): Promise<number> {
  let lu: ChangerLu | undefined;
  let failures = 0;
  const print = (name: ChangerCheckName, ok: boolean, detail: string, ms: number): void => {
    if (!ok) failures++;
    options.print(formatLine({ t: 'check', part: 'changer', name, ok, detail, ms }));
  };
  const started = performance.now();
  try {
    lu = await setUpChanger(options);
    print(
      CHANGER_CHECKS[0],
      true,
      `${lu.paths.join(' ')}; drive = LIO disk naa.${lu.driveNaa}`,
      Math.round(performance.now() - started),
    );
  } catch (e) {
    print(
      CHANGER_CHECKS[0],
      false,
      e instanceof Error ? e.message : String(e),
      Math.round(performance.now() - started),
    );
    for (const name of CHANGER_CHECKS.slice(1)) print(name, false, 'not run: no changer', 0);
    return failures;
  }
  try {
    await runChangerGrpcChecks({ ...lu, luId: `naa.${CHANGER_NAA}` }, print);
    failures += await runChangerScenarios(lu, options);
  } finally {
    // The handler keeps serving until the VM powers off: a command the midlayer sends later (the error handling
    // after the disk LU's PREEMPT AND ABORT hang resets the tcm_loop host) would otherwise wait in the ring.
    lu.handler.unref();
    if (options.outDir) await writeFile(join(options.outDir, 'tcmu-changer.log'), lu.log.join(''));
  }
  return failures;
}

/** Whether a scenario applies to the changer LU, or why not. */
function notForChanger(s: Scenario): string | undefined {
  if (s.tags?.includes('emulator-only')) return 'emulator-only';
  if (s.tags?.some((t) => t.startsWith('lio-bug-')))
    return 'LIO bug scenario (runs on the disk LU spares)';
  if (s.requires?.deviceTypes && !s.requires.deviceTypes.includes(8))
    return 'needs another device type';
  const kinds = new Set(s.steps.map((step) => step.command.kind));
  // Medium access commands follow the profile's device type (disk for lio); INQUIRY, REQUEST SENSE and raw CDBs
  // are answered by the handler, not by LIO's core: they test the disk LU's answers, not PR.
  for (const kind of ['medium-read', 'medium-write', 'inquiry', 'request-sense', 'raw'] as const)
    if (kinds.has(kind)) return `has a ${kind} step (device-specific, not PR)`;
  return undefined;
}

function basicProut(
  key: bigint,
  sark: bigint,
  serviceAction: 0 | 3 | 6 = 0,
  allTgPt = false,
): ScsiRequest {
  const { cdb, parameters } = encodeProut({
    serviceAction,
    scope: 0,
    type: 0,
    reservationKey: key,
    serviceActionKey: sark,
    specIPt: [],
    allTgPt,
    aptpl: false,
  });
  return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: 20_000 };
}

/** Sends `request`, again after each unit attention (reported once each). */
async function sendPastUnitAttentions(d: ScsiDevice, request: ScsiRequest) {
  for (let i = 0; ; i++) {
    const r = await d.execute(request);
    if (r.status !== 2 || ((r.sense[2] ?? 0) & 0x0f) !== 6 || i > 8) return r;
  }
}

/**
 * Leaves the changer LU with no registration, reservation or pending unit attention before a new twin starts:
 * unlike the disk LU it is never recreated, and a new twin starts empty. REGISTER AND IGNORE (again with ALL_TG_PT
 * when LIO insists on it) and CLEAR from nexus 0, RELEASE(6) and TEST UNIT READY from every nexus.
 */
async function cleanChanger(devices: ScsiDevice[]): Promise<number> {
  const first = devices[0] as ScsiDevice;
  const key = 0xc1ea0000n;
  const ignore = (allTgPt: boolean) => basicProut(0n, key, 6, allTgPt);
  if ((await sendPastUnitAttentions(first, ignore(false))).status !== 0)
    await sendPastUnitAttentions(first, ignore(true));
  await sendPastUnitAttentions(first, basicProut(key, 0n, 3));
  for (const d of devices) {
    await sendPastUnitAttentions(d, {
      cdb: fromHex('170000000000'),
      dataInLength: 0,
      timeoutMs: 20_000,
    });
    await sendPastUnitAttentions(d, {
      cdb: fromHex('000000000000'),
      dataInLength: 0,
      timeoutMs: 20_000,
    });
  }
  return decodeReadKeys((await sendPastUnitAttentions(first, prinRequest(0))).dataIn).generation;
}

const prinRequest = (sa: number): ScsiRequest => ({
  cdb: encodePrin(sa, 8192),
  dataInLength: 8192,
  timeoutMs: 20_000,
});

/**
 * Each nexus's relative target port, read from LIO itself: tcmu gives the handler no nexus, so VPD 83h has no
 * target port designator; a registration through each nexus and READ FULL STATUS tell them. Leaves no key.
 */
async function identitiesOf(devices: ScsiDevice[], lu: ChangerLu): Promise<Initiator[]> {
  const send = sendPastUnitAttentions; // earlier checks leave unit attentions
  for (const [i, d] of devices.entries()) await send(d, basicProut(0n, 0xc0de00n + BigInt(i)));
  const full = decodeFullStatus((await send(devices[0] as ScsiDevice, prinRequest(3))).dataIn);
  for (const [i, d] of devices.entries()) await send(d, basicProut(0xc0de00n + BigInt(i), 0n));
  return lu.initiators.map((transportId) => {
    const entry = full.descriptors.find(
      (e) => formatTransportId(e.transportId) === formatTransportId(transportId),
    );
    if (!entry) throw new Error(`READ FULL STATUS does not list ${formatTransportId(transportId)}`);
    return { transportId, relativeTargetPort: entry.relativeTargetPort };
  });
}

/** An emulated lio-profile twin brought to LIO's PRgeneration (REGISTER + unregister: +1 each on LIO). */
function twinAt(generation: number, initiators: Initiator[]): EmulatedLogicalUnit {
  const twin = createEmulator().addLogicalUnit({
    id: CHANGER_SERIAL,
    profile: 'lio',
    serial: CHANGER_SERIAL,
    targetPorts: initiators.map((i) => i.relativeTargetPort),
    acl: Object.fromEntries(initiators.map((i) => [i.relativeTargetPort, [i.transportId]])),
  });
  const first = initiators[0] as Initiator;
  for (let g = 0; g < generation; g++) {
    twin.execute(first, basicProut(0n, 0xc0de00n));
    twin.execute(first, basicProut(0xc0de00n, 0n));
  }
  const now = decodeReadKeys(twin.execute(first, prinRequest(0)).dataIn).generation;
  if (now !== generation) throw new Error(`twin PRgeneration ${now}, LIO ${generation}`);
  return twin;
}

/** The changer's nexuses, their identities as LIO numbers them, and the twin that follows it. */
interface ChangerRun {
  devices: ScsiDevice[];
  initiators: Initiator[];
  nexuses: Array<{ transportId: string; relativeTargetPort: number }>;
  twin: EmulatedLogicalUnit;
  note: string;
}

/** One scenario on the changer and on the twin, compared command by command; transcripts to the out dir. */
async function runOneOnChanger(
  scenario: Scenario,
  run: ChangerRun,
  outDir: string | undefined,
): Promise<ScenarioLine> {
  const { devices, initiators, nexuses, twin } = run;
  const recorder = (note: string) =>
    createTranscriptRecorder({
      profile: 'lio',
      lu: CHANGER_SERIAL,
      serial: CHANGER_SERIAL,
      nexuses,
      note,
    });
  const lioRecorder = recorder(run.note);
  const common = { profile: 'lio' as const, nexusIdentities: initiators, timeoutMs: 20_000 };
  const lio = await runScenario(scenario, {
    ...common,
    nexuses: devices.map((d) => (request) => d.execute(request)),
    recorder: lioRecorder,
  });
  const emuRecorder = recorder('emulator twin');
  const emulator = await runScenario(scenario, {
    ...common,
    nexuses: initiators.map((i) => (request) => Promise.resolve(twin.execute(i, request))),
    recorder: emuRecorder,
  });
  const mismatch = compareTranscripts(lioRecorder.transcript(), emuRecorder.transcript());
  if (outDir) {
    const base = join(outDir, 'transcripts', `changer.${scenario.id}`);
    await mkdir(join(outDir, 'transcripts'), { recursive: true });
    await writeFile(`${base}.lio.jsonl`, lioRecorder.toJsonLines());
    await writeFile(`${base}.emulator.jsonl`, emuRecorder.toJsonLines());
  }
  const summary = (r: typeof lio) =>
    r.skipped !== undefined ? 'skip' : r.passed ? 'pass' : 'fail';
  const line: ScenarioLine = {
    t: 'scenario',
    id: `${CHANGER_SCENARIO_PREFIX}${scenario.id}`,
    lio: summary(lio),
    emulator: summary(emulator),
    commands: lioRecorder.transcript().entries.filter((e) => e.type === 'command').length,
    ms: 0,
  };
  if (lio.skipped !== undefined) line.reason = lio.skipped;
  else if (!lio.passed) line.reason = lio.failure ?? 'failed';
  if (mismatch) line.diff = formatMismatch(scenario.id, mismatch);
  return line;
}

/** The PR scenarios that apply to a changer, on the changer's three nexuses, each compared with a twin. */
async function runChangerScenarios(lu: ChangerLu, options: ChangerPartOptions): Promise<number> {
  // RESERVE(6)/RELEASE(6) beyond the agent's allow-list: the cleanup prologue and the SPC-2 scenarios send them.
  const transport = createSgioTransport({
    allowedOpcodes: new Set([...SGIO_ALLOWED_OPCODES, 0x16, 0x17]),
  });
  const devices: ScsiDevice[] = [];
  let failures = 0;
  const fail = (id: string, e: unknown): ScenarioLine => ({
    t: 'scenario',
    id: `${CHANGER_SCENARIO_PREFIX}${id}`,
    lio: 'fail',
    reason: `harness: ${e instanceof Error ? e.message : String(e)}`,
    ms: 0,
  });
  try {
    for (const path of lu.paths) devices.push(await transport.open(path));
    let initiators: Initiator[];
    try {
      initiators = await identitiesOf(devices, lu);
    } catch (e) {
      options.print(formatLine(fail('identities', e)));
      return 1;
    }
    const nexuses = initiators.map((i) => ({
      transportId: formatTransportId(i.transportId),
      relativeTargetPort: i.relativeTargetPort,
    }));
    const note = `TCM-User changer through tcm_loop, ${lu.paths.join(' ')}`;
    let twin: EmulatedLogicalUnit | undefined;
    for (const scenario of SCENARIOS) {
      const t0 = performance.now();
      const skip = notForChanger(scenario);
      if (skip !== undefined) {
        const id = `${CHANGER_SCENARIO_PREFIX}${scenario.id}`;
        options.print(formatLine({ t: 'scenario', id, lio: 'skip', reason: skip, ms: 0 }));
        continue;
      }
      let line: ScenarioLine;
      try {
        twin ??= twinAt(await cleanChanger(devices), initiators);
        line = await runOneOnChanger(
          scenario,
          { devices, initiators, nexuses, twin, note },
          options.outDir,
        );
      } catch (e) {
        line = fail(scenario.id, e);
      }
      // After a failure or difference: a clean changer LU and a new twin at its PRgeneration.
      if (line.lio === 'fail' || line.diff !== undefined) {
        twin = undefined;
        failures++;
      }
      line.ms = Math.round(performance.now() - t0);
      options.print(formatLine(line));
    }
  } finally {
    await Promise.all(devices.map((d) => d.close()));
  }
  return failures;
}
