/**
 * Transport-agnostic conformance runner: sends a scenario's commands through nexus functions (the emulator, or
 * SG_IO on real /dev/sg nodes), after a cleanup prologue that leaves the LU with no registrations, no reservation
 * and no pending unit attentions, and checks each step's expectations.
 */
import {
  decodeCapabilities,
  decodeFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  decodeSense,
  encodeInquiry,
  encodeInitializeElementStatus,
  encodePrin,
  encodeProut,
  encodeProutCdb,
  encodeRead10,
  encodeRead6,
  encodeReadElementStatus,
  encodeRelease6,
  encodeReportLuns,
  encodeRequestSense,
  encodeReserve6,
  encodeTestUnitReady,
  encodeWrite10,
  encodeWrite6,
  formatKey,
  formatTransportId,
  fromHex,
  parseTransportId,
  toHex,
  transportIdEquals,
  type ProutBasic,
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

  private prout(req: ProutRequest, parameterListLength?: number): ScsiRequest {
    const { cdb, parameters } = encodeProut(req);
    if (parameterListLength === undefined)
      return { cdb, dataOut: parameters, dataInLength: 0, timeoutMs: this.timeoutMs };
    const list = new Uint8Array(parameterListLength);
    list.set(parameters.subarray(0, parameterListLength));
    const forced = encodeProutCdb({
      serviceAction: req.serviceAction,
      scope: req.scope,
      type: req.type,
      parameterListLength,
    });
    return { cdb: forced, dataOut: list, dataInLength: 0, timeoutMs: this.timeoutMs };
  }

  private basic(
    sa: 0 | 1 | 2 | 3 | 4 | 5 | 6,
    fields: Partial<Omit<ProutBasic, 'serviceAction'>>,
  ): ProutRequest {
    return {
      serviceAction: sa,
      scope: 0,
      type: 0,
      reservationKey: 0n,
      serviceActionKey: 0n,
      specIPt: [],
      allTgPt: false,
      aptpl: false,
      ...fields,
    };
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
      this.prout(this.basic(6, { serviceActionKey: CLEANUP_KEY })),
    );
    if (isInvalidFieldInCdb(reg)) {
      // LIO: a nexus left registered with ALL_TG_PT = 1 may only re-register with ALL_TG_PT = 1 (24h/00h).
      reg = await this.sendPastUa(
        0,
        this.prout(this.basic(6, { serviceActionKey: CLEANUP_KEY, allTgPt: true })),
      );
    }
    if (reg.status !== 0)
      throw new Error(`REGISTER AND IGNORE EXISTING KEY answered ${describe(reg)}`);
    const clear = await this.sendPastUa(
      0,
      this.prout(this.basic(3, { reservationKey: CLEANUP_KEY })),
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
        this.prout(this.basic(6, { serviceActionKey: DISCOVERY_KEY + BigInt(n) })),
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
    await this.send(0, this.prout(this.basic(3, { reservationKey: DISCOVERY_KEY })));
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

  private request(command: ScenarioCommand): ScsiRequest {
    const t = this.timeoutMs;
    const pdt = profileCapabilities(this.options.profile).peripheralDeviceType;
    switch (command.kind) {
      case 'register':
        return this.prout(
          this.basic(command.ignore ? 6 : 0, {
            reservationKey: command.key ?? 0n,
            serviceActionKey: command.sark,
            aptpl: command.aptpl ?? false,
            allTgPt: command.allTgPt ?? false,
            specIPt: (command.specIPt ?? []).map((r) => this.transportId(r)),
          }),
          command.parameterListLength,
        );
      case 'reserve':
      case 'release':
        return this.prout(
          this.basic(command.kind === 'reserve' ? 1 : 2, {
            reservationKey: command.key,
            type: command.type,
            scope: command.scope ?? 0,
          }),
        );
      case 'clear':
        return this.prout(this.basic(3, { reservationKey: command.key }));
      case 'preempt':
        return this.prout(
          this.basic(command.abort ? 5 : 4, {
            reservationKey: command.key,
            serviceActionKey: command.sark,
            type: command.type,
            scope: command.scope ?? 0,
          }),
        );
      case 'move': {
        const port = this.identities?.[command.relativeTargetPortOf]?.relativeTargetPort;
        if (port === undefined)
          throw new Error(`no identity for nexus ${command.relativeTargetPortOf}`);
        return this.prout({
          serviceAction: 7,
          scope: 0,
          type: 0,
          reservationKey: command.key,
          serviceActionKey: command.sark,
          unreg: command.unreg ?? false,
          aptpl: false,
          relativeTargetPort: port,
          transportId: this.transportId(command.destination),
        });
      }
      case 'read-keys':
        return prin(0, command.allocationLength ?? 4096, t);
      case 'read-reservation':
        return prin(1, command.allocationLength ?? 4096, t);
      case 'report-capabilities':
        return prin(2, command.allocationLength ?? 4096, t);
      case 'read-full-status':
        return prin(3, command.allocationLength ?? 8192, t);
      case 'prin':
        return prin(command.serviceAction, command.allocationLength ?? 4096, t);
      case 'medium-read':
        if (pdt === 8)
          return {
            cdb: encodeReadElementStatus({ numberOfElements: 1, allocationLength: 8 }),
            dataInLength: 8,
            timeoutMs: t,
          };
        if (pdt === 1)
          return { cdb: encodeRead6({ transferLength: 0 }), dataInLength: 0, timeoutMs: t };
        return {
          cdb: encodeRead10({ lba: 0, transferLength: 1 }),
          dataInLength: 512,
          timeoutMs: t,
        };
      case 'medium-write':
        // INITIALIZE ELEMENT STATUS: write-class like MOVE MEDIUM, but GOOD whatever the cartridges are.
        if (pdt === 8)
          return {
            cdb: encodeInitializeElementStatus(),
            dataInLength: 0,
            timeoutMs: t,
          };
        if (pdt === 1)
          return { cdb: encodeWrite6({ transferLength: 0 }), dataInLength: 0, timeoutMs: t };
        return {
          cdb: encodeWrite10({ lba: 0, transferLength: 1 }),
          dataOut: new Uint8Array(512),
          dataInLength: 0,
          timeoutMs: t,
        };
      case 'test-unit-ready':
        return { cdb: encodeTestUnitReady(), dataInLength: 0, timeoutMs: t };
      case 'inquiry':
        return command.page === undefined
          ? { cdb: encodeInquiry({ allocationLength: 96 }), dataInLength: 96, timeoutMs: t }
          : {
              cdb: encodeInquiry({ evpd: true, pageCode: command.page, allocationLength: 252 }),
              dataInLength: 252,
              timeoutMs: t,
            };
      case 'request-sense':
        return { cdb: encodeRequestSense(96), dataInLength: 96, timeoutMs: t };
      case 'report-luns':
        return { cdb: encodeReportLuns(0, 256), dataInLength: 256, timeoutMs: t };
      case 'reserve6':
        return { cdb: encodeReserve6(), dataInLength: 0, timeoutMs: t };
      case 'release6':
        return { cdb: encodeRelease6(), dataInLength: 0, timeoutMs: t };
      case 'raw':
        return {
          cdb: fromHex(command.cdb),
          ...(command.dataOut ? { dataOut: fromHex(command.dataOut) } : {}),
          dataInLength: command.dataInLength,
          timeoutMs: t,
        };
      case 'power-cycle':
      case 'reset':
      case 'nexus-loss':
        throw new Error(`${command.kind} is a control, not a command`);
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
    const problem = this.check(command, expectation, response);
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

  /** The first failed expectation, as "expected …, got …", or undefined. */
  private check(command: ScenarioCommand, e: Expectation, r: ScsiResponse): string | undefined {
    if (r.hostStatus !== 0) return `transport error: host status 0x${r.hostStatus.toString(16)}`;
    const wantStatus = e.sense ? 'check-condition' : (e.status ?? 'good');
    const status =
      r.status === 0
        ? 'good'
        : r.status === 2
          ? 'check-condition'
          : r.status === 0x18
            ? 'reservation-conflict'
            : `0x${r.status.toString(16)}`;
    const senseText = (): string => {
      try {
        const s = decodeSense(r.sense);
        return `${hex2(s.senseKey)}/${hex2(s.asc)}/${hex2(s.ascq)}`;
      } catch {
        return `undecodable sense ${toHex(r.sense)}`;
      }
    };
    if (status !== wantStatus) {
      const want = e.sense
        ? `CHECK CONDITION ${hex2(e.sense.key)}/${hex2(e.sense.asc)}/${hex2(e.sense.ascq)}`
        : wantStatus;
      return `expected ${want}, got ${status}${status === 'check-condition' ? ` ${senseText()}` : ''}`;
    }
    if (e.sense) {
      const got = senseText();
      const want = `${hex2(e.sense.key)}/${hex2(e.sense.asc)}/${hex2(e.sense.ascq)}`;
      if (got !== want) return `expected sense ${want}, got ${got}`;
    }
    if (e.dataInLength !== undefined && r.dataIn.length !== e.dataInLength) {
      return `expected ${e.dataInLength} data-in bytes, got ${r.dataIn.length}`;
    }
    if (e.dataInHex !== undefined && toHex(r.dataIn) !== e.dataInHex.toLowerCase()) {
      return `expected data-in ${e.dataInHex.toLowerCase()}, got ${toHex(r.dataIn)}`;
    }
    if (e.dataInAt !== undefined) {
      const want = e.dataInAt.hex.toLowerCase();
      const got = toHex(r.dataIn.subarray(e.dataInAt.offset, e.dataInAt.offset + want.length / 2));
      if (got !== want) return `expected data-in bytes ${want} at ${e.dataInAt.offset}, got ${got}`;
    }
    const header = prinHeader(command, r);
    if (e.generation !== undefined && header?.generation !== e.generation) {
      return `expected PRgeneration ${e.generation}, got ${String(header?.generation)}`;
    }
    if (e.generationDelta) {
      const from = this.generations.get(e.generationDelta.from);
      if (from === undefined)
        return `no PRgeneration was recorded under label ${e.generationDelta.from}`;
      const want = (from + e.generationDelta.delta) >>> 0;
      if (header?.generation !== want) {
        return `expected PRgeneration ${want} (${e.generationDelta.from} ${from} + ${e.generationDelta.delta}), got ${String(header?.generation)}`;
      }
    }
    if (e.additionalLength !== undefined && header?.additionalLength !== e.additionalLength) {
      return `expected ADDITIONAL LENGTH ${e.additionalLength}, got ${String(header?.additionalLength)}`;
    }
    if (e.keys) {
      const got = decodeReadKeys(r.dataIn).keys.map(formatKey).sort();
      const want = e.keys.map(formatKey).sort();
      if (got.join(',') !== want.join(','))
        return `expected keys [${want.join(', ')}], got [${got.join(', ')}]`;
    }
    if (e.reservation !== undefined) {
      const got = decodeReadReservation(r.dataIn).reservation;
      const text = (x: { key: bigint; type: number } | null): string =>
        x ? `${formatKey(x.key)} type ${x.type}` : 'none';
      if (text(got ? { key: got.key, type: got.type } : null) !== text(e.reservation)) {
        return `expected reservation ${text(e.reservation)}, got ${text(got)}`;
      }
    }
    if (e.fullStatus) {
      const d = decodeFullStatus(r.dataIn).descriptors;
      if (e.fullStatus.count !== undefined && d.length !== e.fullStatus.count) {
        return `expected ${e.fullStatus.count} READ FULL STATUS descriptors, got ${d.length}`;
      }
      if (e.fullStatus.allTgPt && d.map((x) => x.allTgPt).join() !== e.fullStatus.allTgPt.join()) {
        return `expected ALL_TG_PT [${e.fullStatus.allTgPt.join()}], got [${d.map((x) => x.allTgPt).join()}]`;
      }
      if (e.fullStatus.portsOfNexuses) {
        const ports = (nexuses: number[]): string =>
          nexuses
            .map((n) => this.identities?.[n]?.relativeTargetPort ?? `?${n}`)
            .sort()
            .join(', ');
        const got = d
          .map((x) => x.relativeTargetPort)
          .sort()
          .join(', ');
        const want = ports(e.fullStatus.portsOfNexuses);
        if (got !== want) return `expected relative target ports [${want}], got [${got}]`;
      }
      if (e.fullStatus.holderKeys) {
        const got = d
          .filter((x) => x.holder)
          .map((x) => formatKey(x.reservationKey))
          .sort()
          .join(', ');
        const want = e.fullStatus.holderKeys.map(formatKey).sort().join(', ');
        if (got !== want) return `expected R_HOLDER keys [${want}], got [${got}]`;
      }
      if (this.identities) {
        for (const x of d) {
          const known = this.identities.some((i) =>
            transportIdEquals(i.transportId, x.transportId),
          );
          if (!known && !formatTransportId(x.transportId))
            return 'undecodable TransportID in READ FULL STATUS';
        }
      }
    }
    if (e.capabilities) {
      const c = decodeCapabilities(r.dataIn);
      if (c.length !== 8) return `expected REPORT CAPABILITIES LENGTH 8, got ${c.length}`;
      if (c.allowCommands > 5) return `ALLOW COMMANDS ${c.allowCommands} is above 5`;
      if (c.supportedTypes.some((t) => ![1, 3, 5, 6, 7, 8].includes(t))) {
        return `type mask has undefined bits: [${c.supportedTypes.join()}]`;
      }
      if (e.capabilities.ptplA !== undefined && c.ptplA !== e.capabilities.ptplA) {
        return `expected PTPL_A ${e.capabilities.ptplA ? 1 : 0}, got ${c.ptplA ? 1 : 0}`;
      }
      if (e.capabilities.matchesProfile) {
        const p = profileCapabilities(this.options.profile);
        const got = `types [${c.supportedTypes.join()}] SIP_C ${+c.sipC} ATP_C ${+c.atpC} PTPL_C ${+c.ptplC}`;
        const want = `types [${p.types.join()}] SIP_C ${+p.specIPt} ATP_C ${+p.allTgPt} PTPL_C ${+p.aptpl}`;
        if (got !== want) return `expected ${want} (profile ${this.options.profile}), got ${got}`;
      }
    }
    return undefined;
  }
}

function prin(serviceAction: number, allocationLength: number, timeoutMs: number): ScsiRequest {
  return {
    cdb: encodePrin(serviceAction, allocationLength),
    dataInLength: allocationLength,
    timeoutMs,
  };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
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

/** PRGENERATION and ADDITIONAL LENGTH of a PRIN READ KEYS / READ RESERVATION / READ FULL STATUS answer. */
function prinHeader(
  command: ScenarioCommand,
  r: ScsiResponse,
): { generation: number; additionalLength: number } | undefined {
  const sa =
    command.kind === 'read-keys'
      ? 0
      : command.kind === 'read-reservation'
        ? 1
        : command.kind === 'read-full-status'
          ? 3
          : command.kind === 'prin'
            ? command.serviceAction
            : -1;
  if (r.status !== 0 || r.dataIn.length < 8 || ![0, 1, 3].includes(sa)) return undefined;
  const view = new DataView(r.dataIn.buffer, r.dataIn.byteOffset, r.dataIn.byteLength);
  return { generation: view.getUint32(0), additionalLength: view.getUint32(4) };
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
