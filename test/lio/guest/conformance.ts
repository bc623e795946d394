/**
 * Conformance part of the in-VM suite: every scenario of src/conformance on the real LIO LU through SG_IO (three
 * /dev/sg nexuses), then the same scenario on a fresh emulated LU of profile `lio` with LIO's identity, and a
 * command-by-command comparison of the two transcripts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSgioTransport, SGIO_ALLOWED_OPCODES } from '../../../agent/transport/sgio.js';
import type { ScsiDevice, ScsiTransport } from '../../../agent/transport/transport.js';
import {
  runScenario,
  SCENARIOS,
  type Scenario,
  type ScenarioResult,
} from '../../../src/conformance/index.js';
import {
  createEmulator,
  createTranscriptRecorder,
  type EmulatedLogicalUnit,
  type Initiator,
} from '../../../src/emulator/index.js';
import {
  decodeDeviceIdentification,
  decodeStandardInquiry,
  encodeInquiry,
  formatTransportId,
  fromHex,
  relativeTargetPortOf,
  type TransportId,
} from '../../../src/scsi/index.js';
import { compareTranscripts, formatMismatch } from '../differential.js';
import { formatLine, type ScenarioLine } from '../protocol.js';
import { createLioTopology, type LioLogicalUnit } from './lio-configfs.js';

/** Commands the conformance scenarios send beyond the agent's allow-list (access checks, SPC-2 reservations). */
const CONFORMANCE_EXTRA_OPCODES = [0x08, 0x0a, 0x16, 0x17, 0x25, 0x28, 0x2a];

/** Opcodes the scenarios need: the agent's list, the medium/SPC-2 commands, and their raw CDBs (test-only). */
export function allowedOpcodesFor(scenarios: readonly Scenario[]): Set<number> {
  const set = new Set([...SGIO_ALLOWED_OPCODES, ...CONFORMANCE_EXTRA_OPCODES]);
  for (const scenario of scenarios) {
    for (const step of scenario.steps) {
      if (step.command.kind === 'raw') set.add(fromHex(step.command.cdb)[0] ?? 0);
    }
  }
  return set;
}

/** Order of the run: ordinary scenarios, then those after which LIO cannot remove the LU, the hang last. */
function runOrder(scenario: Scenario): number {
  if (scenario.tags?.includes('lio-bug-preempt-abort-hang')) return 2;
  if (scenario.tags?.includes('lio-bug-spec-i-pt-ref-leak')) return 1;
  return 0;
}

interface LuIdentity {
  vendor: string;
  product: string;
  revision: string;
  naa?: bigint;
  /** SCSI target device name and each target port's SCSI name (VPD 83h SCSI name string designators). */
  targetName?: string;
  targetPortNames: Record<number, string>;
  initiators: Initiator[];
  /** Capacity in 512-byte blocks (READ CAPACITY(10)): lio-setup.sh's LU and the suite's own differ in size. */
  blockCount: number;
}

/** A NUL-terminated, NUL-padded SCSI name string designator value as text. */
function scsiNameOf(value: Uint8Array): string {
  const end = value.indexOf(0);
  return new TextDecoder().decode(end >= 0 ? value.subarray(0, end) : value);
}

/** Reads what the emulated twin must copy from LIO: INQUIRY identity, the LU NAA, each nexus's target port. */
async function identityOf(lu: LioLogicalUnit, devices: ScsiDevice[]): Promise<LuIdentity> {
  const inquiry = async (device: ScsiDevice, page?: number): Promise<Uint8Array> => {
    const request =
      page === undefined
        ? { cdb: encodeInquiry({ allocationLength: 96 }), dataInLength: 96, timeoutMs: 10_000 }
        : {
            cdb: encodeInquiry({ evpd: true, pageCode: page, allocationLength: 252 }),
            dataInLength: 252,
            timeoutMs: 10_000,
          };
    const r = await device.execute(request);
    if (r.status !== 0)
      throw new Error(
        `INQUIRY${page === undefined ? '' : ` VPD ${page}`} on ${device.path}: status ${r.status}`,
      );
    return r.dataIn;
  };
  const standard = decodeStandardInquiry(await inquiry(devices[0] as ScsiDevice));
  const initiators: Initiator[] = [];
  const targetPortNames: Record<number, string> = {};
  let naa: bigint | undefined;
  let targetName: string | undefined;
  for (const [i, device] of devices.entries()) {
    const designators = decodeDeviceIdentification(await inquiry(device, 0x83));
    const rtp = relativeTargetPortOf(designators);
    if (rtp === undefined)
      throw new Error(`${device.path}: no relative target port designator in VPD 83h`);
    initiators.push({ transportId: lu.initiators[i] as TransportId, relativeTargetPort: rtp });
    const luNaa = designators.find((d) => d.association === 0 && d.designatorType === 3);
    if (luNaa && naa === undefined)
      naa = luNaa.value.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
    const portName = designators.find((d) => d.association === 1 && d.designatorType === 8);
    if (portName) targetPortNames[rtp] = scsiNameOf(portName.value);
    const deviceName = designators.find((d) => d.association === 2 && d.designatorType === 8);
    if (deviceName && targetName === undefined) targetName = scsiNameOf(deviceName.value);
  }
  return {
    blockCount: await blockCountOf(devices[0] as ScsiDevice),
    vendor: standard.vendor,
    product: standard.product,
    revision: standard.revision,
    ...(naa !== undefined ? { naa } : {}),
    ...(targetName !== undefined ? { targetName } : {}),
    targetPortNames,
    initiators,
  };
}

/** Number of 512-byte blocks from READ CAPACITY(10) (last LBA + 1). */
async function blockCountOf(device: ScsiDevice): Promise<number> {
  const r = await device.execute({
    cdb: fromHex('25000000000000000000'),
    dataInLength: 8,
    timeoutMs: 10_000,
  });
  if (r.status !== 0 || r.dataIn.length < 8)
    throw new Error(`READ CAPACITY(10) on ${device.path}: status ${r.status}`);
  const view = new DataView(r.dataIn.buffer, r.dataIn.byteOffset, 8);
  if (view.getUint32(4) !== 512)
    throw new Error(`${device.path}: block length ${view.getUint32(4)}, the twin models 512`);
  return view.getUint32(0) + 1;
}

function summary(r: ScenarioResult): 'pass' | 'fail' | 'skip' {
  return r.skipped !== undefined ? 'skip' : r.passed ? 'pass' : 'fail';
}

/** Options of runConformance. */
export interface ConformanceOptions {
  /** Out dir (9p, read-write) for transcripts; undefined = console only. */
  readonly outDir?: string;
  /** Scenario ids to run (default all). */
  readonly only?: readonly string[];
  /** Nexuses per LU. @default 3 */
  readonly nexuses?: number;
  /** Whether the LU lio-setup.sh made is still untouched (else the first scenario recreates it). @default true */
  readonly freshPrimary?: boolean;
  /** Prints one result line. */
  readonly print: (line: string) => void;
}

/**
 * A LIO LU, its open nexuses, and its emulated twin. The twin lives as long as the LU: scenarios run one after
 * another on both, so PRgeneration and everything the cleanup prologue leaves behind stay in lockstep without
 * recreating the LU each time (that costs seconds under TCG). After any failure or difference the pair is
 * replaced, so one scenario's divergence cannot leak into the next.
 */
export interface Pair {
  lu: LioLogicalUnit;
  devices: ScsiDevice[];
  identity: LuIdentity;
  twin: EmulatedLogicalUnit;
  nexuses: Array<{ transportId: string; relativeTargetPort: number }>;
}

/** Opens the LU's nexuses, reads its identity and builds its emulated twin. */
export async function openPair(lu: LioLogicalUnit, transport: ScsiTransport): Promise<Pair> {
  const devices: ScsiDevice[] = [];
  try {
    for (const path of lu.paths) devices.push(await transport.open(path));
    const identity = await identityOf(lu, devices);
    const twin = createEmulator().addLogicalUnit({
      id: lu.serial,
      profile: 'lio',
      serial: lu.serial,
      vendor: identity.vendor,
      product: identity.product,
      revision: identity.revision,
      ...(identity.naa !== undefined ? { naa: identity.naa } : {}),
      ...(identity.targetName !== undefined ? { targetName: identity.targetName } : {}),
      targetPortNames: identity.targetPortNames,
      targetPorts: identity.initiators.map((i) => i.relativeTargetPort),
      // tcm_loop: each TPG knows only the initiator of its own nexus (one ACL per TPG).
      acl: Object.fromEntries(
        identity.initiators.map((i) => [i.relativeTargetPort, [i.transportId]]),
      ),
      blockCount: identity.blockCount,
    });
    const nexuses = identity.initiators.map((i) => ({
      transportId: formatTransportId(i.transportId),
      relativeTargetPort: i.relativeTargetPort,
    }));
    return { lu, devices, identity, twin, nexuses };
  } catch (e) {
    await Promise.all(devices.map((d) => d.close()));
    throw e;
  }
}

export async function closePair(pair: Pair | undefined): Promise<void> {
  if (pair) await Promise.all(pair.devices.map((d) => d.close()));
}

/** Runs the scenarios on LIO and the emulator; prints one line per scenario; returns the number of failures. */
export async function runConformance(options: ConformanceOptions): Promise<number> {
  const topology = createLioTopology({ nexuses: options.nexuses ?? 3 });
  const scenarios = SCENARIOS.filter((s) => !options.only || options.only.includes(s.id)).sort(
    (a, b) => runOrder(a) - runOrder(b),
  );
  const allowedOpcodes = allowedOpcodesFor(scenarios);
  const transport = createSgioTransport({ allowedOpcodes });
  // The PREEMPT AND ABORT hang: a short watchdog so the run ends in seconds, not minutes.
  const hangTransport = createSgioTransport({ allowedOpcodes, watchdogGraceMs: 2000 });
  if (options.outDir) await mkdir(join(options.outDir, 'transcripts'), { recursive: true });
  let failures = 0;
  let pair: Pair | undefined;
  let fresh = options.freshPrimary ?? true; // the LU lio-setup.sh made has never been used
  let previous: string | undefined;
  for (const scenario of scenarios) {
    const started = performance.now();
    let line: ScenarioLine;
    if (scenario.tags?.includes('emulator-only')) {
      line = {
        t: 'scenario',
        id: scenario.id,
        lio: 'skip',
        reason: 'emulator-only (needs power-cycle/reset/nexus-loss control)',
        ms: 0,
      };
    } else {
      const spare = runOrder(scenario) > 0;
      const attempt = async (): Promise<{ line: ScenarioLine; reused: boolean }> => {
        const t0 = performance.now();
        const reused = pair !== undefined && !spare;
        try {
          if (spare || !pair) {
            await closePair(pair);
            pair = undefined;
            const lu = spare
              ? await topology.createSpare()
              : fresh
                ? await topology.primary()
                : await topology.recreatePrimary();
            fresh = false;
            pair = await openPair(
              lu,
              spare && runOrder(scenario) === 2 ? hangTransport : transport,
            );
          }
          const setupMs = Math.round(performance.now() - t0);
          const result = await runOne(scenario, pair, runOrder(scenario) === 2, options);
          if (result.phases) result.phases.lu = setupMs;
          return { line: result, reused };
        } catch (e) {
          const reason = `harness: ${e instanceof Error ? e.message : String(e)}`;
          return { line: { t: 'scenario', id: scenario.id, lio: 'fail', reason, ms: 0 }, reused };
        }
      };
      let outcome = await attempt();
      // Anything but a clean pass: the next scenario gets a new LU and a new twin.
      if (outcome.line.lio !== 'pass' || outcome.line.diff !== undefined || spare) {
        await closePair(pair);
        pair = undefined;
      }
      // LIO state the cleanup prologue cannot undo (e.g. an ALL_TG_PT registration: REGISTER AND IGNORE without
      // ALL_TG_PT is then refused with 24h/00h) is the previous scenario's leftover, not this scenario's result:
      // report it as a carry-over and run the scenario again on a fresh LU.
      if (outcome.reused && outcome.line.reason?.includes('cleanup prologue failed')) {
        options.print(
          formatLine({
            t: 'info',
            name: 'carry-over',
            after: previous,
            before: scenario.id,
            reason: outcome.line.reason,
            diff: outcome.line.diff,
          }),
        );
        outcome = await attempt();
        if (outcome.line.lio !== 'pass' || outcome.line.diff !== undefined) {
          await closePair(pair);
          pair = undefined;
        }
      }
      line = outcome.line;
      previous = scenario.id;
    }
    line.ms = Math.round(performance.now() - started);
    if (line.lio === 'fail' || line.diff !== undefined) failures++;
    options.print(formatLine(line));
  }
  await closePair(pair);
  return failures;
}

/** Runs one scenario on LIO, then on the twin, and compares the transcripts (written to the out dir). */
export async function runOne(
  scenario: Scenario,
  pair: Pair,
  hang: boolean,
  options: Pick<ConformanceOptions, 'outDir'>,
): Promise<ScenarioLine> {
  const timeoutMs = hang ? 4000 : 20_000;
  const { lu, devices, identity, twin, nexuses } = pair;
  const t2 = performance.now();
  const lioRecorder = createTranscriptRecorder({
    profile: 'lio',
    lu: lu.serial,
    serial: lu.serial,
    nexuses,
    note: `LIO fileio through tcm_loop in the test VM, ${lu.paths.join(' ')}`,
  });
  const lio = await runScenario(scenario, {
    profile: 'lio',
    nexuses: devices.map((d) => (request) => d.execute(request)),
    recorder: lioRecorder,
    nexusIdentities: identity.initiators,
    timeoutMs,
  });
  const t3 = performance.now();
  const emuRecorder = createTranscriptRecorder({
    profile: 'lio',
    lu: lu.serial,
    serial: lu.serial,
    nexuses,
    note: 'emulator twin',
  });
  const emulator = await runScenario(scenario, {
    profile: 'lio',
    nexuses: identity.initiators.map(
      (initiator) => (request) => Promise.resolve(twin.execute(initiator, request)),
    ),
    recorder: emuRecorder,
    nexusIdentities: identity.initiators,
    timeoutMs,
  });
  const lioCommands = lioRecorder.transcript().entries.filter((e) => e.type === 'command');
  // The known hang: compare what came before the command LIO never answered (the watchdog's DID_TIME_OUT).
  const hungAt = lioCommands.findIndex((c) => c.type === 'command' && c.hostStatus === 0x03);
  const known = hang && hungAt >= 0;
  const mismatch = compareTranscripts(
    lioRecorder.transcript(),
    emuRecorder.transcript(),
    known ? hungAt : undefined,
  );
  if (options.outDir) {
    const base = join(options.outDir, 'transcripts', scenario.id);
    await writeFile(`${base}.lio.jsonl`, lioRecorder.toJsonLines());
    await writeFile(`${base}.emulator.jsonl`, emuRecorder.toJsonLines());
  }
  const line: ScenarioLine = {
    t: 'scenario',
    id: scenario.id,
    lio: summary(lio),
    emulator: summary(emulator),
    commands: lioCommands.length,
    ms: 0,
    phases: { lu: 0, lio: Math.round(t3 - t2), emulator: Math.round(performance.now() - t3) },
  };
  if (lio.skipped !== undefined) line.reason = lio.skipped;
  else if (!lio.passed) line.reason = lio.failure ?? 'failed';
  if (mismatch) line.diff = formatMismatch(scenario.id, mismatch);
  if (known) line.known = 'lio-bug-preempt-abort-hang';
  return line;
}
