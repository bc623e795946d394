/**
 * Transport-agnostic conformance runner: sends a scenario's commands through nexus functions (the emulator, or
 * SG_IO on real /dev/sg nodes), after a cleanup prologue that leaves the LU with no registrations, no reservation
 * and no pending unit attentions, and checks each step's expectations.
 */
import {
  decodeFullStatus,
  decodeSense,
  encodePrin,
  encodeRelease6,
  encodeTestUnitReady,
  formatKey,
  parseTransportId,
  toHex,
  type ProutRequest,
  type ScsiRequest,
  type ScsiResponse,
  type TransportId,
} from '../scsi/index.js';
import {
  profileCapabilities,
  type ProfileName,
  type TranscriptRecorder,
} from '../emulator/index.js';
import { checkResponse, hex2, prinHeader } from './checks.js';
import {
  basicProut,
  mediumRequest,
  plainRequest,
  proutCommandRequest,
  proutRequest,
} from './requests.js';
import type {
  Expectation,
  Scenario,
  ScenarioCommand,
  ScenarioStep,
  TransportRef,
} from './scenario.js';

/** Sends one command through one I_T nexus. */
export type NexusFunction = (request: ScsiRequest) => Promise<ScsiResponse>;

/** Options of runScenario. */
export interface RunOptions {
  /** One function per I_T nexus; scenario step `nexus: i` uses `nexuses[i]`. */
  nexuses: NexusFunction[];
  /** Profile of the device: picks expectation overrides, medium commands and capability checks. */
  profile: ProfileName;
  /** Emulator-only controls; scenarios using a missing one are skipped. */
  control?: {
    powerCycle?: () => void | Promise<void>;
    reset?: () => void | Promise<void>;
    nexusLoss?: (nexus: number) => void | Promise<void>;
  };
  /** Records every command (prologue included) and control event. */
  recorder?: TranscriptRecorder;
  /** Initiator TransportIDs of the nexuses, if known; otherwise discovered with READ FULL STATUS when needed. */
  nexusIdentities?: Array<{ transportId: TransportId; relativeTargetPort: number }>;
  /** Command timeout. @default 30000 */
  timeoutMs?: number;
}

/** Result of one step. */
export interface StepResult {
  index: number;
  nexus: number;
  command: string;
  passed: boolean;
  /** What was checked, and the first difference. */
  message?: string;
  response: { status: number; sense: string; dataIn: string; resid: number };
}

/** Result of one scenario. */
export interface ScenarioResult {
  scenario: string;
  profile: ProfileName;
  /** 'spc4' when the profile follows SPC-4 here, else the profile whose departure it follows. */
  follows: string;
  skipped?: string;
  passed: boolean;
  steps: StepResult[];
  /** Scenario, step, command bytes and both expected and actual values, when a step failed. */
  failure?: string;
}

/** Key used only by the cleanup prologue. */
const CLEANUP_KEY = 0xc1ea_0000_0000_0001n;
/** Keys the discovery step registers (one per nexus, + index). */
const DISCOVERY_KEY = 0xd15c_0000_0000_0000n;
const MAX_UA_DRAIN = 8;

/** Whether `profile` departs from SPC-4 in this scenario, and how the test should be named. */
export function scenarioFollows(scenario: Scenario, profile: ProfileName): string {
  const overridden = scenario.steps.some((s) => s.overrides?.[profile] !== undefined);
  return overridden ? profile : 'spc4';
}

/** Why the scenario cannot run on this profile/harness, or undefined. */
export function skipReason(
  scenario: Scenario,
  options: Pick<RunOptions, 'nexuses' | 'profile' | 'control'>,
): string | undefined {
  const caps = profileCapabilities(options.profile);
  const r = scenario.requires ?? {};
  const need = r.nexuses ?? 2;
  if (options.nexuses.length < need) return `needs ${need} nexuses, have ${options.nexuses.length}`;
  for (const sa of r.prout ?? [])
    if (!caps.proutServiceActions.includes(sa)) return `profile lacks PROUT SA ${sa}`;
  for (const sa of r.prin ?? [])
    if (!caps.prinServiceActions.includes(sa)) return `profile lacks PRIN SA ${sa}`;
  for (const t of r.types ?? []) if (!caps.types.includes(t)) return `profile lacks type ${t}`;
  for (const t of r.typesUnsupported ?? [])
    if (caps.types.includes(t)) return `profile supports type ${t}`;
  if (r.specIPt && !caps.specIPt) return 'profile lacks SPEC_I_PT';
  if (r.allTgPt && !caps.allTgPt) return 'profile lacks ALL_TG_PT';
  if (r.aptpl && !caps.aptpl) return 'profile lacks APTPL';
  if (r.deviceTypes && !r.deviceTypes.includes(caps.peripheralDeviceType))
    return `needs device type ${r.deviceTypes.join(' or ')}, profile is ${caps.peripheralDeviceType}`;
  for (const step of scenario.steps) {
    const k = step.command.kind;
    if (k === 'power-cycle' && !options.control?.powerCycle) return 'needs power-cycle control';
    if (k === 'reset' && !options.control?.reset) return 'needs reset control';
    if (k === 'nexus-loss' && !options.control?.nexusLoss) return 'needs nexus-loss control';
    if (step.command.kind === 'medium-read' || step.command.kind === 'medium-write') {
      if (![0, 1, 8].includes(caps.peripheralDeviceType))
        return 'no medium command for this device type';
    }
  }
  return undefined;
}

/** The expectation for `profile`: the step's, with the profile's override fields on top. */
export function expectationFor(step: ScenarioStep, profile: ProfileName): Expectation | undefined {
  const override = step.overrides?.[profile];
  if (!override) return step.expect;
  // An override naming a status or sense is a different answer altogether; otherwise it refines the data checks.
  if (override.status !== undefined || override.sense !== undefined) return override;
  return { ...(step.expect ?? {}), ...override };
}

/** Runs one scenario; never throws for device answers (a transport rejection fails the step with its message). */
export async function runScenario(
  scenario: Scenario,
  options: RunOptions,
): Promise<ScenarioResult> {
  const follows = scenarioFollows(scenario, options.profile);
  const base = { scenario: scenario.id, profile: options.profile, follows };
  const reason = skipReason(scenario, options);
  if (reason) return { ...base, skipped: reason, passed: true, steps: [] };
  const run = new Run(options);
  try {
    await run.prologue();
    const needsIdentities = scenario.steps.some(
      (s) =>
        s.command.kind === 'move' ||
        (s.command.kind === 'register' && (s.command.specIPt ?? []).some((r) => 'nexus' in r)),
    );
    if (needsIdentities) await run.discover();
  } catch (e) {
    return {
      ...base,
      passed: false,
      steps: [],
      failure: `${scenario.id}: cleanup prologue failed: ${String(e)}`,
    };
  }
  const steps: StepResult[] = [];
  for (const [index, step] of scenario.steps.entries()) {
    const result = await run.step(step, index);
    steps.push(result);
    if (!result.passed) {
      return {
        ...base,
        passed: false,
        steps,
        failure: `scenario ${scenario.id} [${options.profile}], ${result.message}`,
      };
    }
  }
  return { ...base, passed: true, steps };
}

class Run {
  private readonly generations = new Map<string, number>();
  private identities: Array<{ transportId: TransportId; relativeTargetPort: number }> | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly options: RunOptions) {
    this.identities = options.nexusIdentities;
    this.timeoutMs = options.timeoutMs ?? 30000;
  }

  private async send(nexus: number, request: ScsiRequest): Promise<ScsiResponse> {
    const fn = this.options.nexuses[nexus];
    if (!fn) throw new Error(`no nexus ${nexus}`);
    const response = await fn(request);
    this.options.recorder?.command(nexus, request, response);
    return response;
  }

  /** Consumes pending unit attentions with TEST UNIT READY (bounded). */
  private async drain(nexus: number): Promise<void> {
    for (let i = 0; i < MAX_UA_DRAIN; i++) {
      const r = await this.send(nexus, {
        cdb: encodeTestUnitReady(),
        dataInLength: 0,
        timeoutMs: this.timeoutMs,
      });
      if (!isUnitAttention(r)) return;
    }
  }

  /** Sends a command, retrying once per pending unit attention (prologue only). */
  private async sendPastUa(nexus: number, request: ScsiRequest): Promise<ScsiResponse> {
    let r = await this.send(nexus, request);
    for (let i = 0; i < MAX_UA_DRAIN && isUnitAttention(r); i++)
      r = await this.send(nexus, request);
    return r;
  }

  async prologue(): Promise<void> {
    const count = this.options.nexuses.length;
    for (let n = 0; n < count; n++) await this.drain(n);
    for (let n = 0; n < count; n++) {
      await this.sendPastUa(n, {
        cdb: encodeRelease6(),
        dataInLength: 0,
        timeoutMs: this.timeoutMs,
      });
    }
    let reg = await this.sendPastUa(
      0,
      this.prout(basicProut(6, { serviceActionKey: CLEANUP_KEY })),
    );
    if (isInvalidFieldInCdb(reg)) {
      // LIO: a nexus left registered with ALL_TG_PT = 1 may only re-register with ALL_TG_PT = 1 (24h/00h).
      reg = await this.sendPastUa(
        0,
        this.prout(basicProut(6, { serviceActionKey: CLEANUP_KEY, allTgPt: true })),
      );
    }
    if (reg.status !== 0)
      throw new Error(`REGISTER AND IGNORE EXISTING KEY answered ${describe(reg)}`);
    const clear = await this.sendPastUa(
      0,
      this.prout(basicProut(3, { reservationKey: CLEANUP_KEY })),
    );
    if (clear.status !== 0) throw new Error(`CLEAR answered ${describe(clear)}`);
    for (let n = 0; n < count; n++) await this.drain(n);
  }

  /** Learns each nexus's TransportID and relative target port from READ FULL STATUS. */
  async discover(): Promise<void> {
    if (this.identities) return;
    const count = this.options.nexuses.length;
    for (let n = 0; n < count; n++) {
      const r = await this.sendPastUa(
        n,
        this.prout(basicProut(6, { serviceActionKey: DISCOVERY_KEY + BigInt(n) })),
      );
      if (r.status !== 0)
        throw new Error(`discovery REGISTER from nexus ${n} answered ${describe(r)}`);
    }
    const full = await this.send(0, {
      cdb: encodePrin(3, 8192),
      dataInLength: 8192,
      timeoutMs: this.timeoutMs,
    });
    if (full.status !== 0) throw new Error(`discovery READ FULL STATUS answered ${describe(full)}`);
    const status = decodeFullStatus(full.dataIn);
    this.identities = Array.from({ length: count }, (_, n) => {
      const d = status.descriptors.find((x) => x.reservationKey === DISCOVERY_KEY + BigInt(n));
      if (!d) throw new Error(`discovery: nexus ${n}'s key is not in READ FULL STATUS`);
      return { transportId: d.transportId, relativeTargetPort: d.relativeTargetPort };
    });
    await this.send(0, this.prout(basicProut(3, { reservationKey: DISCOVERY_KEY })));
    for (let n = 0; n < count; n++) await this.drain(n);
  }

  private transportId(ref: TransportRef): TransportId {
    if ('nexus' in ref) {
      const id = this.identities?.[ref.nexus];
      if (!id) throw new Error(`no identity for nexus ${ref.nexus}`);
      return id.transportId;
    }
    if ('transportId' in ref) return parseTransportId(ref.transportId);
    const own = this.identities?.[0]?.transportId;
    // A protocol the fabric does not use: FC when the fabric is SAS/iSCSI, else SAS.
    return own?.protocol === 'fc'
      ? { protocol: 'sas', sasAddress: 0x5000000000000badn }
      : { protocol: 'fc', wwpn: 0x2000000000000badn };
  }

  /** A PROUT command with this run's timeout. */
  private prout(req: ProutRequest): ScsiRequest {
    return proutRequest(req, this.timeoutMs);
  }

  private request(command: ScenarioCommand): ScsiRequest {
    switch (command.kind) {
      case 'register':
      case 'reserve':
      case 'release':
      case 'clear':
      case 'preempt':
      case 'move':
        return proutCommandRequest(
          command,
          {
            transportId: (ref) => this.transportId(ref),
            relativeTargetPort: (nexus) => this.identities?.[nexus]?.relativeTargetPort,
          },
          this.timeoutMs,
        );
      case 'medium-read':
      case 'medium-write':
        return mediumRequest(
          command.kind,
          profileCapabilities(this.options.profile).peripheralDeviceType,
          this.timeoutMs,
        );
      case 'power-cycle':
      case 'reset':
      case 'nexus-loss':
        throw new Error(`${command.kind} is a control, not a command`);
      default:
        return plainRequest(command, this.timeoutMs);
    }
  }

  async step(step: ScenarioStep, index: number): Promise<StepResult> {
    const nexus = step.nexus ?? 0;
    const command = step.command;
    const name = describeCommand(command);
    const empty = { status: 0, sense: '', dataIn: '', resid: 0 };
    const control = this.options.control;
    if (
      command.kind === 'power-cycle' ||
      command.kind === 'reset' ||
      command.kind === 'nexus-loss'
    ) {
      if (command.kind === 'power-cycle') await control?.powerCycle?.();
      else if (command.kind === 'reset') await control?.reset?.();
      else await control?.nexusLoss?.(nexus);
      this.options.recorder?.event(command.kind, command.kind === 'nexus-loss' ? nexus : undefined);
      return { index, nexus, command: name, passed: true, response: empty };
    }
    let request: ScsiRequest;
    let response: ScsiResponse;
    try {
      request = this.request(command);
      response = await this.send(nexus, request);
    } catch (e) {
      return {
        index,
        nexus,
        command: name,
        passed: false,
        message: `step ${index} (nexus ${nexus}, ${name}): ${String(e)}`,
        response: empty,
      };
    }
    const summary = {
      status: response.status,
      sense: toHex(response.sense),
      dataIn: toHex(response.dataIn),
      resid: response.resid,
    };
    const expectation = expectationFor(step, this.options.profile) ?? {};
    const problem = checkResponse(command, expectation, response, {
      generations: this.generations,
      identities: this.identities,
      profile: this.options.profile,
    });
    if (step.label !== undefined) {
      const g = generationOf(command, response);
      if (g !== undefined) this.generations.set(step.label, g);
    }
    if (problem) {
      const message =
        `step ${index} (nexus ${nexus}, ${name}): ${problem}\n` +
        `  cdb ${toHex(request.cdb)}${request.dataOut ? ` data-out ${toHex(request.dataOut)}` : ''}\n` +
        `  got status 0x${response.status.toString(16).padStart(2, '0')} sense ${summary.sense || '(none)'} data-in ${summary.dataIn || '(none)'}`;
      return { index, nexus, command: name, passed: false, message, response: summary };
    }
    return { index, nexus, command: name, passed: true, response: summary };
  }
}

function isUnitAttention(r: ScsiResponse): boolean {
  if (r.status !== 2) return false;
  try {
    return decodeSense(r.sense).senseKey === 6;
  } catch {
    return false;
  }
}

function isInvalidFieldInCdb(r: ScsiResponse): boolean {
  if (r.status !== 2) return false;
  try {
    const s = decodeSense(r.sense);
    return s.senseKey === 5 && s.asc === 0x24 && s.ascq === 0;
  } catch {
    return false;
  }
}

function describe(r: ScsiResponse): string {
  return `status 0x${hex2(r.status)} sense ${toHex(r.sense) || '(none)'} host 0x${hex2(r.hostStatus)}`;
}

function generationOf(command: ScenarioCommand, r: ScsiResponse): number | undefined {
  return prinHeader(command, r)?.generation;
}

/** Short text for a command, for step names and failure messages. */
export function describeCommand(c: ScenarioCommand): string {
  const k = (x: bigint | undefined): string => formatKey(x ?? 0n);
  switch (c.kind) {
    case 'register':
      return `${c.ignore ? 'REGISTER AND IGNORE' : 'REGISTER'} rk ${k(c.key)} sark ${k(c.sark)}${c.aptpl ? ' APTPL' : ''}${c.allTgPt ? ' ALL_TG_PT' : ''}${c.specIPt?.length ? ` SPEC_I_PT×${c.specIPt.length}` : ''}${c.parameterListLength !== undefined ? ` length ${c.parameterListLength}` : ''}`;
    case 'reserve':
    case 'release':
      return `${c.kind.toUpperCase()} rk ${k(c.key)} type ${c.type}${c.scope ? ` scope ${c.scope}` : ''}`;
    case 'clear':
      return `CLEAR rk ${k(c.key)}`;
    case 'preempt':
      return `${c.abort ? 'PREEMPT AND ABORT' : 'PREEMPT'} rk ${k(c.key)} sark ${k(c.sark)} type ${c.type}${c.scope ? ` scope ${c.scope}` : ''}`;
    case 'move':
      return `REGISTER AND MOVE rk ${k(c.key)} sark ${k(c.sark)}${c.unreg ? ' UNREG' : ''}`;
    case 'prin':
      return `PRIN SA 0x${hex2(c.serviceAction)}`;
    case 'raw':
      return `raw ${c.cdb}`;
    default:
      return c.kind.toUpperCase().replaceAll('-', ' ');
  }
}
