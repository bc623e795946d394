/**
 * Changer part of the in-VM suite: a real kernel medium changer. LIO exports no changer from its stock backstores,
 * so a TCM-User backstore (target_core_user) hands the commands LIO's core does not emulate to the project's own
 * handler (test/lio/tcmu-changer.c, the element model in C), while PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE,
 * the reservation checks and unit attentions stay LIO core's. The LU is linked as LUN 1 into the disk LU's
 * tcm_loop TPGs: three nexuses, /dev/sg nodes of type 8. Then: discovery, mtx against prfleet's READ ELEMENT
 * STATUS through the agent (before and after MOVE MEDIUM), sg_persist against prfleet on PR state, and the PR
 * conformance scenarios that apply to a changer, each with a differential check against an emulated twin.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createChannel, createClient } from 'nice-grpc';
import { createAgent, type Agent } from '../../../agent/agent.js';
import { createSgioSource } from '../../../agent/sources.js';
import { listScsiGenericNodes } from '../../../agent/sysfs.js';
import { createSgioTransport, SGIO_ALLOWED_OPCODES } from '../../../agent/transport/sgio.js';
import type { ScsiDevice } from '../../../agent/transport/transport.js';
import { createControlClient, type ControlClient } from '../../../src/common/client.js';
import { createLogger } from '../../../src/common/logger.js';
import { runScenario, SCENARIOS, type Scenario } from '../../../src/conformance/index.js';
import {
  createEmulator,
  createTranscriptRecorder,
  type EmulatedLogicalUnit,
  type Initiator,
} from '../../../src/emulator/index.js';
import { FleetServiceDefinition, type Loader } from '../../../src/gen/prfleet/v1/fleet.js';
import { Outcome, PrType } from '../../../src/gen/prfleet/v1/scsi.js';
import {
  decodeDeviceIdentification,
  decodeFullStatus,
  decodeReadKeys,
  encodeInquiry,
  encodePrin,
  encodeProut,
  encodeReadElementStatus,
  formatTransportId,
  fromHex,
  toHex,
  type ScsiRequest,
  type TransportId,
} from '../../../src/scsi/index.js';
import { defaultServerConfig } from '../../../src/server/config.js';
import { createPrfleetServer, type PrfleetServer } from '../../../src/server/server.js';
import {
  CHANGER_CHECKS,
  CHANGER_SCENARIO_PREFIX,
  type ChangerCheckName,
} from '../changer-checks.js';
import { compareTranscripts, formatMismatch } from '../differential.js';
import { mtxView, loaderView } from '../mtx-view.js';
import { formatLine, type ScenarioLine } from '../protocol.js';

const run = promisify(execFile);
const WWN = 'naa.5001405000000001';
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

/**
 * A PostgreSQL server in the guest (the host's binaries, data on tmpfs, no fsync): ListLoaders is a fleet
 * operation and needs the durable store, and PGlite (WebAssembly) crashes V8 under TCG (out of memory with 1 GiB,
 * "Check failed: it->second.Size() > offset" with 2 GiB).
 */
async function startPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const entry = (await readFile('/etc/passwd', 'utf8'))
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = entry?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('no postgres user in the host root');
  const as = { uid: Number(uid), gid: Number(gid), timeout: 300_000 };
  const dir = '/tmp/prfleet-changer-pg';
  const port = 54329;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  await chown(dir, as.uid, as.gid);
  // Debian keeps the server binaries off PATH (/usr/lib/postgresql/<major>/bin); take the newest there.
  const majors = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
  const newest = majors.sort((a, b) => Number(b) - Number(a))[0];
  const bin = (name: string) =>
    newest === undefined ? name : join('/usr/lib/postgresql', newest, 'bin', name);
  await run(
    bin('initdb'),
    ['-D', dir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'],
    as,
  );
  const options = `-k /tmp -c listen_addresses=127.0.0.1 -p ${port} -F`;
  await run(
    'pg_ctl',
    ['-D', dir, '-w', '-t', '300', '-l', join(dir, 'log'), '-o', options, 'start'],
    as,
  );
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await run(bin('pg_ctl'), ['-D', dir, '-m', 'immediate', 'stop'], as).catch(() => undefined);
    },
  };
}

/** Backstore, handler, LUN 1 in each TPG; waits for the changer's sg nodes. */
async function setUpChanger(options: ChangerPartOptions): Promise<ChangerLu> {
  const cfs = '/sys/kernel/config/target';
  const tpgs = Array.from({ length: options.nexuses ?? 3 }, (_, i) => i + 1);
  const host = (await readFile(join(cfs, 'loopback', WWN, 'tpgt_1', 'address'), 'utf8')).split(
    ':',
  )[0];
  const before = await hctlNodes();
  const diskPaths = tpgs.flatMap((t) => before.get(`${host}:0:${t}:0`)?.path ?? []);
  const driveNaa = await naaOf(diskPaths[0] ?? '/dev/sg0');
  const backstore = join(cfs, 'core', BACKSTORE);
  await mkdir(backstore, { recursive: true });
  // dev_size is required by target_core_user; nothing reads blocks of a changer.
  await writeFile(join(backstore, 'control'), `dev_config=${DEV_CONFIG},dev_size=1048576`);
  await writeFile(join(backstore, 'enable'), '1');
  const args = [
    '--match',
    `/prfleet_changer/${DEV_CONFIG}`,
    '--naa',
    CHANGER_NAA,
    '--serial',
    CHANGER_SERIAL,
  ];
  args.push('--drive', driveNaa, '--cartridge', '2=ABC002L8', '--cartridge', '3=ABC003L8');
  args.push('--cartridge', '16=CLN001L1', '--loaded', '0=1:ABC001L8', '--verbose');
  const handler = spawn(options.handler, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
  // The handler answers the scan's INQUIRY: it must run before the LUN is linked (tcm_loop scans at link time).
  for (const t of tpgs) {
    const lun = join(cfs, 'loopback', WWN, `tpgt_${t}`, 'lun', 'lun_1');
    await mkdir(lun, { recursive: true });
    await symlink(backstore, join(lun, 'changer'));
  }
  for (let i = 0; ; i++) {
    const nodes = await hctlNodes();
    const found = tpgs.map((t) => nodes.get(`${host}:0:${t}:1`));
    if (found.every((n) => n !== undefined && n.type === 8)) {
      const initiators: TransportId[] = [];
      for (const t of tpgs) {
        const nexus = (
          await readFile(join(cfs, 'loopback', WWN, `tpgt_${t}`, 'nexus'), 'utf8')
        ).trim();
        initiators.push({
          protocol: 'sas',
          sasAddress: BigInt(`0x${nexus.replace(/^naa\./, '')}`),
        });
      }
      return {
        paths: found.map((n) => n?.path ?? ''),
        initiators,
        driveNaa,
        diskPaths,
        handler,
        log,
      };
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
    await runGrpcChecks(lu, print);
    failures += await runChangerScenarios(lu, options);
  } finally {
    lu.handler.kill();
    if (options.outDir) await writeFile(join(options.outDir, 'tcmu-changer.log'), lu.log.join(''));
  }
  return failures;
}

type Print = (name: ChangerCheckName, ok: boolean, detail: string, ms: number) => void;

/** Server, two sgio agents, control and fleet clients; the changer checks after the first. */
async function runGrpcChecks(lu: ChangerLu, print: Print): Promise<void> {
  const log = createLogger({ level: 'silent', name: 'lio-changer' });
  const agents: Agent[] = [];
  let server: PrfleetServer | undefined;
  let control: ControlClient | undefined;
  let channel: ReturnType<typeof createChannel> | undefined;
  let postgres: { url: string; stop(): Promise<void> } | undefined;
  const [c1, c2, c3] = lu.paths as [string, string, string];
  const changerId = `naa.${CHANGER_NAA}`;
  const commandTimeout = { seconds: 20, nanos: 0 };
  const prout = { commandTimeout, idempotencyKey: '', reason: 'lio vm changer', dryRun: false };
  const at = {
    a: { luId: '', agentId: 'vm-a', path: c1 },
    b: { luId: '', agentId: 'vm-b', path: c2 },
    c: { luId: '', agentId: 'vm-b', path: c3 },
  };
  // Keys from the fleet's key registry (AllocateKey), so the loader view can name the holder's host.
  const keys = { a: 0n, b: 0n };
  const fleet = () =>
    createClient(FleetServiceDefinition, channel as ReturnType<typeof createChannel>);
  const loader = async (): Promise<Loader> => {
    const { loaders } = await fleet().listLoaders({ refresh: true });
    const found = loaders.find((l) => l.changerLuId === changerId);
    if (!found)
      throw new Error(`no loader for ${changerId}: ${loaders.map((l) => l.loaderId).join(', ')}`);
    if (found.error !== '') throw new Error(`loader ${found.loaderId}: ${found.error}`);
    return found;
  };
  const mtxAgrees = async (path: string): Promise<string> => {
    const { stdout } = await run('mtx', ['-f', path, 'status'], { timeout: 60_000 });
    const seen = mtxView(stdout);
    const view = loaderView(await loader());
    if (JSON.stringify(seen) !== JSON.stringify(view))
      throw new Error(`mtx: ${seen.join('; ')} | prfleet: ${view.join('; ')}`);
    return seen.filter((l) => !l.endsWith('empty')).join('; ');
  };

  const checks: Array<[ChangerCheckName, () => Promise<string>]> = [
    [
      CHANGER_CHECKS[1],
      async () => {
        server = await createPrfleetServer({
          log,
          config: {
            ...defaultServerConfig(),
            protosetPath: resolve(process.cwd(), 'src/gen/protoset.binpb'),
            instanceId: 'lio-vm-changer',
            // ListLoaders is a fleet operation: it needs the durable store.
            store: { kind: 'postgres', databaseUrl: (postgres = await startPostgres()).url },
            shutdownTimeoutMs: 2000,
            drainGraceMs: 1000,
          },
        });
        const address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
        control = createControlClient(address);
        channel = createChannel(address);
        const [d1, d2] = lu.diskPaths;
        for (const [id, allow] of [
          ['vm-a', [c1, ...(d1 ? [d1] : [])]],
          ['vm-b', [c2, c3, ...(d2 ? [d2] : [])]],
        ] as const) {
          const source = await createSgioSource({ includeDisks: true });
          const agent = createAgent(
            {
              server: address,
              agentId: id,
              plaintext: true,
              site: 'lio-vm',
              allow: [...allow],
              backoff: { initialMs: 50, maxMs: 1000 },
              drainMs: 2000,
            },
            { log, source },
          );
          agents.push(agent);
          await agent.start();
          await agent.waitForState('connected', AbortSignal.timeout(30_000));
        }
        for (let i = 0; ; i++) {
          const { logicalUnits } = await control.listDevices({});
          const changer = logicalUnits.find((u) => u.luId === changerId);
          const online = changer?.paths.filter((p) => p.agentConnected).length ?? 0;
          const disk = logicalUnits.find((u) => u.luId === `naa.${lu.driveNaa}`);
          if (changer?.peripheralDeviceType === 8 && online === 3 && disk)
            return `${changerId} PDT 8 ${changer.vendor} ${changer.product}, ${online} paths, profile ${changer.capabilities?.profile ?? '?'}; disk ${disk.luId}`;
          if (i > 150)
            throw new Error(
              `LUs: ${logicalUnits.map((u) => `${u.luId} pdt ${u.peripheralDeviceType} paths ${u.paths.length}`).join(', ')}`,
            );
          await sleep(100);
        }
      },
    ],
    [CHANGER_CHECKS[2], () => mtxAgrees(c1)],
    [
      CHANGER_CHECKS[3],
      async () => {
        await run('mtx', ['-f', c2, 'unload', '1', '0'], { timeout: 60_000 });
        await run('mtx', ['-f', c3, 'load', '3', '0'], { timeout: 60_000 });
        const seen = await mtxAgrees(c1);
        if (!seen.includes('drive 0 full from 3 ABC003L8'))
          throw new Error(`after the moves: ${seen}`);
        const drive = (await loader()).drives[0];
        if (drive?.luId !== `naa.${lu.driveNaa}`)
          throw new Error(`drive 0 is ${drive?.luId ?? 'nothing'}`);
        return `${seen}; drive 0 = ${drive.luId} (grouping by element status)`;
      },
    ],
    [
      CHANGER_CHECKS[4],
      async () => {
        for (const host of ['a', 'b'] as const) {
          const allocated = await fleet().allocateKey({
            site: 'lio-vm',
            agentId: at[host].agentId,
            purpose: '',
            owner: 'lio-vm',
            note: '',
          });
          keys[host] = allocated.key?.key ?? 0n;
        }
        for (const [target, key] of [
          [at.a, keys.a],
          [at.b, keys.b],
        ] as const) {
          const { result } = await control!.register({
            target,
            key: 0n,
            newKey: key,
            options: prout,
          });
          if (result?.outcome !== Outcome.OUTCOME_GOOD)
            throw new Error(`REGISTER: ${result?.message ?? '?'}`);
        }
        const reserve = await control!.reserve({
          target: at.a,
          key: keys.a,
          type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
          options: prout,
        });
        if (reserve.result?.outcome !== Outcome.OUTCOME_GOOD)
          throw new Error(`RESERVE: ${reserve.result?.message ?? '?'}`);
        const keysOut = (await run('sg_persist', ['-n', '-i', '-k', c3])).stdout;
        const resOut = (await run('sg_persist', ['-n', '-i', '-r', c3])).stdout;
        const sgKeys = [...keysOut.matchAll(/^\s+0x([0-9a-f]+)\s*$/gm)]
          .map((m) => BigInt(`0x${m[1]}`))
          .sort();
        const sgHolder = /Key=0x([0-9a-f]+)/.exec(resOut)?.[1];
        const sgType = /type: (.+)$/m.exec(resOut)?.[1]?.trim();
        const readKeys = await control!.readKeys({ target: at.c, options: { commandTimeout } });
        const pfKeys =
          readKeys.result?.data?.$case === 'readKeys'
            ? [...readKeys.result.data.value.keys].sort()
            : [];
        const res = await control!.readReservation({ target: at.c, options: { commandTimeout } });
        const r = res.result?.data?.$case === 'readReservation' ? res.result.data.value : undefined;
        const hold = (await loader()).changerHold;
        const mine = `keys ${pfKeys.map((k) => k.toString(16)).join(',')} holder ${r?.key.toString(16)} type ${r?.type}`;
        const theirs = `keys ${sgKeys.map((k) => k.toString(16)).join(',')} holder ${sgHolder} type ${sgType}`;
        if (
          pfKeys.join() !== sgKeys.join() ||
          pfKeys.join() !== [keys.a, keys.b].sort().join() ||
          r?.key.toString(16) !== sgHolder ||
          r?.type !== PrType.PR_TYPE_WRITE_EXCLUSIVE ||
          sgType !== 'Write Exclusive'
        )
          throw new Error(`prfleet: ${mine} | sg_persist: ${theirs}`);
        if (hold?.agentId !== 'vm-a' || hold.key !== keys.a || !hold.reserved)
          throw new Error(
            `loader view holder: ${JSON.stringify(hold, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}`,
          );
        return `${theirs}; loader: changer held by ${hold.agentId}`;
      },
    ],
    [
      CHANGER_CHECKS[5],
      async () => {
        await control!.release({
          target: at.a,
          key: keys.a,
          type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
          options: prout,
        });
        const reserve = await control!.reserve({
          target: at.a,
          key: keys.a,
          type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
          options: prout,
        });
        if (reserve.result?.outcome !== Outcome.OUTCOME_GOOD)
          throw new Error(`RESERVE EA: ${reserve.result?.message ?? '?'}`);
        const status = async (path: string): Promise<number> => {
          const device = await createSgioTransport().open(path);
          try {
            const cdb = encodeReadElementStatus({
              numberOfElements: 0xffff,
              voltag: true,
              allocationLength: 4096,
            });
            return (await device.execute({ cdb, dataInLength: 4096, timeoutMs: 10_000 })).status;
          } finally {
            await device.close();
          }
        };
        const [holder, other] = [await status(c1), await status(c2)];
        await control!.clear({ target: at.a, key: keys.a, options: prout });
        if (holder !== 0 || other !== 0x18)
          throw new Error(`holder status ${holder}, registrant status 0x${other.toString(16)}`);
        return 'holder GOOD, other registrant 18h; CLEAR';
      },
    ],
    [
      CHANGER_CHECKS[6],
      async () => {
        // core_scsi3_pr_seq_non_holder names no SMC command: under WE only DMA_TO_DEVICE conflicts for
        // non-registrants, and registered non-holders may only read. MOVE MEDIUM and INITIALIZE ELEMENT STATUS
        // carry no data, so a host that never registered can move cartridges on a WE-reserved LIO changer (SPC-4
        // table 47 and the emulator's changer profiles class them as writes: conflict).
        for (const [target, key] of [
          [at.a, keys.a],
          [at.b, keys.b],
        ] as const)
          await control!.register({ target, key: 0n, newKey: key, options: prout });
        await control!.reserve({
          target: at.a,
          key: keys.a,
          type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
          options: prout,
        });
        const transport = createSgioTransport({
          allowedOpcodes: new Set([...SGIO_ALLOWED_OPCODES, 0x07, 0xa5]),
        });
        const statusOf = async (
          path: string,
          cdb: Uint8Array,
          dataInLength = 0,
        ): Promise<string> => {
          const device = await transport.open(path);
          try {
            for (let i = 0; ; i++) {
              const r = await device.execute({ cdb, dataInLength, timeoutMs: 10_000 });
              // Unit attentions from the earlier checks are reported once each.
              if (r.status === 2 && ((r.sense[2] ?? 0) & 0x0f) === 6 && i < 8) continue;
              return r.status === 2
                ? `2/${toHex(r.sense.subarray(12, 14))}`
                : r.status.toString(16);
            }
          } finally {
            await device.close();
          }
        };
        const move = (from: number, to: number) =>
          fromHex(
            `a5000000${from.toString(16).padStart(4, '0')}${to.toString(16).padStart(4, '0')}00000000`,
          );
        const res = encodeReadElementStatus({ numberOfElements: 0xffff, allocationLength: 4096 });
        const seen = {
          'IES non-registrant': await statusOf(c3, fromHex('070000000000')),
          'IES registrant': await statusOf(c2, fromHex('070000000000')),
          'RES registrant': await statusOf(c2, res, 4096),
          'RES non-registrant': await statusOf(c3, res, 4096),
          // slot 2 (20h+1) to slot 5 and back, from the nexus that never registered
          'MOVE non-registrant': await statusOf(c3, move(0x21, 0x24)),
          'MOVE back non-registrant': await statusOf(c3, move(0x24, 0x21)),
          'MOVE registrant': await statusOf(c2, move(0x21, 0x24)),
          'MOVE holder': await statusOf(c1, move(0x21, 0x24)),
          'MOVE back holder': await statusOf(c1, move(0x24, 0x21)),
        };
        await control!.clear({ target: at.a, key: keys.a, options: prout });
        const text = Object.entries(seen)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        const expected = {
          'IES non-registrant': '0',
          'IES registrant': '18',
          'RES registrant': '0',
          'RES non-registrant': '0',
          'MOVE non-registrant': '0',
          'MOVE back non-registrant': '0',
          'MOVE registrant': '18',
          'MOVE holder': '0',
          'MOVE back holder': '0',
        };
        if (JSON.stringify(seen) !== JSON.stringify(expected)) throw new Error(text);
        return text;
      },
    ],
  ];
  try {
    for (const [name, check] of checks) {
      const t0 = performance.now();
      try {
        const detail = await Promise.race([
          check(),
          sleep(300_000, undefined, { ref: false }).then(() => {
            throw new Error('no answer within 300 s');
          }),
        ]);
        print(name, true, detail, Math.round(performance.now() - t0));
      } catch (e) {
        print(
          name,
          false,
          e instanceof Error ? e.message : String(e),
          Math.round(performance.now() - t0),
        );
      }
    }
  } finally {
    await Promise.allSettled(agents.map((a) => a.stop()));
    control?.close();
    channel?.close();
    await server?.shutdown(2000).catch(() => undefined);
    await postgres?.stop();
  }
}

/** Whether a scenario applies to the changer LU, or why not. */
function notForChanger(s: Scenario): string | undefined {
  if (s.tags?.includes('emulator-only')) return 'emulator-only';
  if (s.tags?.some((t) => t.startsWith('lio-bug-')))
    return 'LIO bug scenario (runs on the disk LU spares)';
  if (s.requires?.deviceTypes && !s.requires.deviceTypes.includes(8))
    return 'needs another device type';
  const kinds = new Set(s.steps.map((step) => step.command.kind));
  // Medium access commands follow the profile's device type (disk for lio); INQUIRY, REQUEST SENSE, REPORT LUNS
  // and raw CDBs are the handler's or see both LUNs of the TPG: they test the disk LU's answers, not PR.
  for (const kind of [
    'medium-read',
    'medium-write',
    'inquiry',
    'request-sense',
    'report-luns',
    'raw',
  ] as const)
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

/** The PR scenarios that apply to a changer, on the changer's three nexuses, each compared with a twin. */
async function runChangerScenarios(lu: ChangerLu, options: ChangerPartOptions): Promise<number> {
  // RESERVE(6)/RELEASE(6) beyond the agent's allow-list: the cleanup prologue and the SPC-2 scenarios send them.
  const transport = createSgioTransport({
    allowedOpcodes: new Set([...SGIO_ALLOWED_OPCODES, 0x16, 0x17]),
  });
  const devices: ScsiDevice[] = [];
  let failures = 0;
  try {
    for (const path of lu.paths) devices.push(await transport.open(path));
    let initiators: Initiator[];
    try {
      initiators = await identitiesOf(devices, lu);
    } catch (e) {
      const reason = `harness: ${e instanceof Error ? e.message : String(e)}`;
      options.print(
        formatLine({
          t: 'scenario',
          id: `${CHANGER_SCENARIO_PREFIX}identities`,
          lio: 'fail',
          reason,
          ms: 0,
        }),
      );
      return 1;
    }
    const nexuses = initiators.map((i) => ({
      transportId: formatTransportId(i.transportId),
      relativeTargetPort: i.relativeTargetPort,
    }));
    let twin: EmulatedLogicalUnit | undefined;
    for (const scenario of SCENARIOS) {
      const id = `${CHANGER_SCENARIO_PREFIX}${scenario.id}`;
      const t0 = performance.now();
      const skip = notForChanger(scenario);
      if (skip !== undefined) {
        options.print(formatLine({ t: 'scenario', id, lio: 'skip', reason: skip, ms: 0 }));
        continue;
      }
      const line: ScenarioLine = { t: 'scenario', id, lio: 'fail', ms: 0 };
      try {
        if (twin === undefined) twin = twinAt(await cleanChanger(devices), initiators);
        const lioRecorder = createTranscriptRecorder({
          profile: 'lio',
          lu: CHANGER_SERIAL,
          serial: CHANGER_SERIAL,
          nexuses,
          note: `TCM-User changer through tcm_loop, ${lu.paths.join(' ')}`,
        });
        const lio = await runScenario(scenario, {
          profile: 'lio',
          nexuses: devices.map((d) => (request) => d.execute(request)),
          recorder: lioRecorder,
          nexusIdentities: initiators,
          timeoutMs: 20_000,
        });
        const emuRecorder = createTranscriptRecorder({
          profile: 'lio',
          lu: CHANGER_SERIAL,
          serial: CHANGER_SERIAL,
          nexuses,
          note: 'emulator twin',
        });
        const current = twin;
        const emulator = await runScenario(scenario, {
          profile: 'lio',
          nexuses: initiators.map(
            (initiator) => (request) => Promise.resolve(current.execute(initiator, request)),
          ),
          recorder: emuRecorder,
          nexusIdentities: initiators,
          timeoutMs: 20_000,
        });
        const mismatch = compareTranscripts(lioRecorder.transcript(), emuRecorder.transcript());
        if (options.outDir) {
          const base = join(options.outDir, 'transcripts', `changer.${scenario.id}`);
          await mkdir(join(options.outDir, 'transcripts'), { recursive: true });
          await writeFile(`${base}.lio.jsonl`, lioRecorder.toJsonLines());
          await writeFile(`${base}.emulator.jsonl`, emuRecorder.toJsonLines());
        }
        line.lio = lio.skipped !== undefined ? 'skip' : lio.passed ? 'pass' : 'fail';
        line.emulator = emulator.skipped !== undefined ? 'skip' : emulator.passed ? 'pass' : 'fail';
        if (lio.skipped !== undefined) line.reason = lio.skipped;
        else if (!lio.passed) line.reason = lio.failure ?? 'failed';
        if (mismatch) line.diff = formatMismatch(scenario.id, mismatch);
        line.commands = lioRecorder.transcript().entries.filter((e) => e.type === 'command').length;
      } catch (e) {
        line.reason = `harness: ${e instanceof Error ? e.message : String(e)}`;
      }
      // After a failure or difference: a clean changer LU and a new twin at its PRgeneration.
      if (line.lio === 'fail' || line.diff !== undefined) twin = undefined;
      if (line.lio === 'fail' || line.diff !== undefined) failures++;
      line.ms = Math.round(performance.now() - t0);
      options.print(formatLine(line));
    }
  } finally {
    await Promise.all(devices.map((d) => d.close()));
  }
  return failures;
}
