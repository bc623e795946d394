/**
 * The changer part's gRPC checks (test/lio/guest/changer.ts sets the changer up): a prfleet server with a
 * PostgreSQL store in the guest, two sgio agents (vm-a: changer nexus 1 and the disk's; vm-b: changer nexuses 2
 * and 3 and the disk's), control and fleet clients. Discovery, mtx against ListLoaders, sg_persist against
 * prfleet, and what LIO's core answers for changer commands under reservations.
 */
import { execFile } from 'node:child_process';
import { chown, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createChannel, createClient } from 'nice-grpc';
import { createAgent, type Agent } from '../../../agent/agent.js';
import { createSgioSource } from '../../../agent/sources.js';
import { createSgioTransport, SGIO_ALLOWED_OPCODES } from '../../../agent/transport/sgio.js';
import { createControlClient, type ControlClient } from '../../../src/common/client.js';
import { createLogger } from '../../../src/common/logger.js';
import { FleetServiceDefinition, type Loader } from '../../../src/gen/prfleet/v1/fleet.js';
import { Outcome, PrType } from '../../../src/gen/prfleet/v1/scsi.js';
import { encodeReadElementStatus, fromHex, toHex } from '../../../src/scsi/index.js';
import { defaultServerConfig } from '../../../src/server/config.js';
import { createPrfleetServer, type PrfleetServer } from '../../../src/server/server.js';
import { CHANGER_CHECKS, type ChangerCheckName } from '../changer-checks.js';
import { loaderView, mtxView } from '../mtx-view.js';

const run = promisify(execFile);

/** What the checks need of the changer setup. */
export interface ChangerTarget {
  /** LU id of the changer (naa.<its NAA>). */
  readonly luId: string;
  /** /dev/sg of each changer nexus. */
  readonly paths: readonly string[];
  /** The disk LU's NAA (hex), which the changer's data transfer element names. */
  readonly driveNaa: string;
  /** /dev/sg of the disk LU's nexuses that still exist. */
  readonly diskPaths: readonly string[];
}

/** Prints one check line. */
export type Print = (name: ChangerCheckName, ok: boolean, detail: string, ms: number) => void;

/**
 * A PostgreSQL server in the guest (the host root's binaries, data on tmpfs, no fsync): ListLoaders is a fleet
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
    bin('pg_ctl'),
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

const commandTimeout = { seconds: 20, nanos: 0 };
const prout = { commandTimeout, idempotencyKey: '', reason: 'lio vm changer', dryRun: false };

/** SG_IO status of one command ("0", "18", or "2/<asc><ascq>"), past the unit attentions earlier checks left. */
async function statusOf(path: string, cdb: Uint8Array, dataInLength = 0): Promise<string> {
  const transport = createSgioTransport({
    allowedOpcodes: new Set([...SGIO_ALLOWED_OPCODES, 0x07, 0xa5]),
  });
  const device = await transport.open(path);
  try {
    for (let i = 0; ; i++) {
      const r = await device.execute({ cdb, dataInLength, timeoutMs: 10_000 });
      if (r.status === 2 && ((r.sense[2] ?? 0) & 0x0f) === 6 && i < 8) continue;
      return r.status === 2 ? `2/${toHex(r.sense.subarray(12, 14))}` : r.status.toString(16);
    }
  } finally {
    await device.close();
  }
}

const hex16 = (n: number): string => n.toString(16).padStart(4, '0');
const moveMedium = (from: number, to: number): Uint8Array =>
  fromHex(`a5000000${hex16(from)}${hex16(to)}00000000`);
const INITIALIZE_ELEMENT_STATUS = fromHex('070000000000');

/** The checks after the changer answered, in CHANGER_CHECKS order; state carried from one to the next. */
class ChangerChecks {
  private readonly log = createLogger({ level: 'silent', name: 'lio-changer' });
  private readonly agents: Agent[] = [];
  private server: PrfleetServer | undefined;
  private postgres: { url: string; stop(): Promise<void> } | undefined;
  private channel: ReturnType<typeof createChannel> | undefined;
  private controlClient: ControlClient | undefined;
  /** Keys from the fleet's key registry (AllocateKey), so the loader view can name the holder's host. */
  private readonly keys = { a: 0n, b: 0n };
  private readonly at;

  constructor(private readonly target: ChangerTarget) {
    const [c1, c2, c3] = target.paths;
    this.at = {
      a: { luId: '', agentId: 'vm-a', path: c1 ?? '' },
      b: { luId: '', agentId: 'vm-b', path: c2 ?? '' },
      c: { luId: '', agentId: 'vm-b', path: c3 ?? '' },
    };
  }

  private get control(): ControlClient {
    if (this.controlClient === undefined) throw new Error('no server (discovery failed)');
    return this.controlClient;
  }

  private fleet() {
    if (this.channel === undefined) throw new Error('no server (discovery failed)');
    return createClient(FleetServiceDefinition, this.channel);
  }

  private async loader(): Promise<Loader> {
    const { loaders } = await this.fleet().listLoaders({ refresh: true });
    const found = loaders.find((l) => l.changerLuId === this.target.luId);
    if (!found)
      throw new Error(
        `no loader for ${this.target.luId}: ${loaders.map((l) => l.loaderId).join(', ')}`,
      );
    if (found.error !== '') throw new Error(`loader ${found.loaderId}: ${found.error}`);
    return found;
  }

  /** `mtx status` through `path` and ListLoaders, element by element; the full elements as text. */
  private async mtxAgrees(path: string): Promise<string> {
    const { stdout } = await run('mtx', ['-f', path, 'status'], { timeout: 60_000 });
    const seen = mtxView(stdout);
    const view = loaderView(await this.loader());
    if (JSON.stringify(seen) !== JSON.stringify(view))
      throw new Error(`mtx: ${seen.join('; ')} | prfleet: ${view.join('; ')}`);
    return seen.filter((l) => !l.endsWith('empty')).join('; ');
  }

  private async good(
    what: string,
    call: Promise<{ result?: { outcome: Outcome; message: string } | undefined }>,
  ) {
    const { result } = await call;
    if (result?.outcome !== Outcome.OUTCOME_GOOD)
      throw new Error(`${what}: ${result?.message ?? '?'}`);
  }

  private async registerAndReserve(type: PrType): Promise<void> {
    for (const host of ['a', 'b'] as const)
      await this.good(
        `REGISTER ${host}`,
        this.control.register({
          target: this.at[host],
          key: 0n,
          newKey: this.keys[host],
          options: prout,
        }),
      );
    await this.good(
      'RESERVE',
      this.control.reserve({ target: this.at.a, key: this.keys.a, type, options: prout }),
    );
  }

  async discovery(): Promise<string> {
    const config = {
      ...defaultServerConfig(),
      // The guest code runs compiled from a cache directory; the descriptor set stays in the checkout (cwd).
      protosetPath: resolve(process.cwd(), 'src/gen/protoset.binpb'),
      instanceId: 'lio-vm-changer',
      // ListLoaders is a fleet operation: it needs the durable store.
      store: {
        kind: 'postgres' as const,
        databaseUrl: (this.postgres = await startPostgres()).url,
      },
      shutdownTimeoutMs: 2000,
      drainGraceMs: 1000,
    };
    this.server = await createPrfleetServer({ log: this.log, config });
    const address = `127.0.0.1:${await this.server.listen('127.0.0.1:0')}`;
    this.controlClient = createControlClient(address);
    this.channel = createChannel(address);
    const [d1, d2] = this.target.diskPaths;
    const allow = {
      'vm-a': [this.at.a.path, ...(d1 ? [d1] : [])],
      'vm-b': [this.at.b.path, this.at.c.path, ...(d2 ? [d2] : [])],
    };
    for (const [agentId, paths] of Object.entries(allow)) {
      const source = await createSgioSource({ includeDisks: true });
      const agent = createAgent(
        {
          server: address,
          agentId,
          plaintext: true,
          site: 'lio-vm',
          allow: paths,
          backoff: { initialMs: 50, maxMs: 1000 },
          drainMs: 2000,
        },
        { log: this.log, source },
      );
      this.agents.push(agent);
      await agent.start();
      await agent.waitForState('connected', AbortSignal.timeout(30_000));
    }
    for (let i = 0; ; i++) {
      const { logicalUnits } = await this.control.listDevices({});
      const changer = logicalUnits.find((u) => u.luId === this.target.luId);
      const online = changer?.paths.filter((p) => p.agentConnected).length ?? 0;
      const disk = logicalUnits.find((u) => u.luId === `naa.${this.target.driveNaa}`);
      if (changer?.peripheralDeviceType === 8 && online === 3 && disk)
        return `${changer.luId} PDT 8 ${changer.vendor} ${changer.product}, ${online} paths, profile ${changer.capabilities?.profile ?? '?'}; disk ${disk.luId}`;
      if (i > 150)
        throw new Error(
          `LUs: ${logicalUnits.map((u) => `${u.luId} pdt ${u.peripheralDeviceType} paths ${u.paths.length}`).join(', ')}`,
        );
      await sleep(100);
    }
  }

  elements(): Promise<string> {
    return this.mtxAgrees(this.at.a.path);
  }

  async afterMoves(): Promise<string> {
    await run('mtx', ['-f', this.at.b.path, 'unload', '1', '0'], { timeout: 60_000 });
    await run('mtx', ['-f', this.at.c.path, 'load', '3', '0'], { timeout: 60_000 });
    const seen = await this.mtxAgrees(this.at.a.path);
    if (!seen.includes('drive 0 full from 3 ABC003L8')) throw new Error(`after the moves: ${seen}`);
    const drive = (await this.loader()).drives[0];
    if (drive?.luId !== `naa.${this.target.driveNaa}`)
      throw new Error(`drive 0 is ${drive?.luId ?? 'nothing'}`);
    return `${seen}; drive 0 = ${drive.luId} (grouping by element status)`;
  }

  async prState(): Promise<string> {
    for (const host of ['a', 'b'] as const) {
      const { key } = await this.fleet().allocateKey({
        site: 'lio-vm',
        agentId: this.at[host].agentId,
        purpose: '',
        owner: 'lio-vm',
        note: '',
      });
      this.keys[host] = key?.key ?? 0n;
    }
    await this.registerAndReserve(PrType.PR_TYPE_WRITE_EXCLUSIVE);
    const node = this.at.c.path;
    const keysOut = (await run('sg_persist', ['-n', '-i', '-k', node])).stdout;
    const resOut = (await run('sg_persist', ['-n', '-i', '-r', node])).stdout;
    const sgKeys = [...keysOut.matchAll(/^\s+0x([0-9a-f]+)\s*$/gm)]
      .map((m) => BigInt(`0x${m[1]}`))
      .sort();
    const sgHolder = /Key=0x([0-9a-f]+)/.exec(resOut)?.[1];
    const sgType = /type: (.+)$/m.exec(resOut)?.[1]?.trim();
    const read = await this.control.readKeys({ target: this.at.c, options: { commandTimeout } });
    const pfKeys =
      read.result?.data?.$case === 'readKeys' ? [...read.result.data.value.keys].sort() : [];
    const res = await this.control.readReservation({
      target: this.at.c,
      options: { commandTimeout },
    });
    const r = res.result?.data?.$case === 'readReservation' ? res.result.data.value : undefined;
    const hold = (await this.loader()).changerHold;
    const mine = `keys ${pfKeys.map((k) => k.toString(16)).join(',')} holder ${r?.key.toString(16)} type ${r?.type}`;
    const theirs = `keys ${sgKeys.map((k) => k.toString(16)).join(',')} holder ${sgHolder} type ${sgType}`;
    if (
      pfKeys.join() !== sgKeys.join() ||
      pfKeys.join() !== [this.keys.a, this.keys.b].sort().join() ||
      r?.key.toString(16) !== sgHolder ||
      r?.type !== PrType.PR_TYPE_WRITE_EXCLUSIVE ||
      sgType !== 'Write Exclusive'
    )
      throw new Error(`prfleet: ${mine} | sg_persist: ${theirs}`);
    if (hold?.agentId !== 'vm-a' || hold.key !== this.keys.a || !hold.reserved)
      throw new Error(
        `loader view holder: ${hold?.agentId ?? '?'} key ${hold?.key.toString(16) ?? '?'}`,
      );
    return `${theirs}; loader: changer held by ${hold.agentId}`;
  }

  async conflictUnderEa(): Promise<string> {
    const { at, keys } = this;
    await this.control.release({
      target: at.a,
      key: keys.a,
      type: PrType.PR_TYPE_WRITE_EXCLUSIVE,
      options: prout,
    });
    await this.good(
      'RESERVE EA',
      this.control.reserve({
        target: at.a,
        key: keys.a,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options: prout,
      }),
    );
    const res = encodeReadElementStatus({
      numberOfElements: 0xffff,
      voltag: true,
      allocationLength: 4096,
    });
    const [holder, other] = [
      await statusOf(at.a.path, res, 4096),
      await statusOf(at.b.path, res, 4096),
    ];
    await this.control.clear({ target: at.a, key: keys.a, options: prout });
    if (holder !== '0' || other !== '18')
      throw new Error(`holder status ${holder}, registrant status ${other}`);
    return 'holder GOOD, other registrant 18h; CLEAR';
  }

  /**
   * core_scsi3_pr_seq_non_holder names no SMC command: under WE only DMA_TO_DEVICE conflicts for non-registrants,
   * and registered non-holders may only read. MOVE MEDIUM and INITIALIZE ELEMENT STATUS carry no data, so a host
   * that never registered can move cartridges on a WE-reserved LIO changer (the emulator's changer profiles class
   * them as writes: conflict), measured by this check.
   */
  async directionClasses(): Promise<string> {
    await this.registerAndReserve(PrType.PR_TYPE_WRITE_EXCLUSIVE);
    const [holder, registrant, stranger] = [this.at.a.path, this.at.b.path, this.at.c.path];
    const res = encodeReadElementStatus({ numberOfElements: 0xffff, allocationLength: 4096 });
    // slot 2 (21h) to slot 5 (24h) and back
    const seen = {
      'IES non-registrant': await statusOf(stranger, INITIALIZE_ELEMENT_STATUS),
      'IES registrant': await statusOf(registrant, INITIALIZE_ELEMENT_STATUS),
      'RES registrant': await statusOf(registrant, res, 4096),
      'RES non-registrant': await statusOf(stranger, res, 4096),
      'MOVE non-registrant': await statusOf(stranger, moveMedium(0x21, 0x24)),
      'MOVE back non-registrant': await statusOf(stranger, moveMedium(0x24, 0x21)),
      'MOVE registrant': await statusOf(registrant, moveMedium(0x21, 0x24)),
      'MOVE holder': await statusOf(holder, moveMedium(0x21, 0x24)),
      'MOVE back holder': await statusOf(holder, moveMedium(0x24, 0x21)),
    };
    await this.control.clear({ target: this.at.a, key: this.keys.a, options: prout });
    const text = Object.entries(seen)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const conflicts = Object.entries(seen)
      .filter(([, v]) => v !== '0')
      .map(([k]) => k);
    if (conflicts.join() !== 'IES registrant,MOVE registrant') throw new Error(text);
    return text;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.agents.map((a) => a.stop()));
    this.controlClient?.close();
    this.channel?.close();
    await this.server?.shutdown(2000).catch(() => undefined);
    await this.postgres?.stop();
  }
}

/** Runs the checks after the first (the setup's) in order, one line each. */
export async function runChangerGrpcChecks(target: ChangerTarget, print: Print): Promise<void> {
  const checks = new ChangerChecks(target);
  const steps: ReadonlyArray<readonly [ChangerCheckName, () => Promise<string>]> = [
    [CHANGER_CHECKS[1], () => checks.discovery()],
    [CHANGER_CHECKS[2], () => checks.elements()],
    [CHANGER_CHECKS[3], () => checks.afterMoves()],
    [CHANGER_CHECKS[4], () => checks.prState()],
    [CHANGER_CHECKS[5], () => checks.conflictUnderEa()],
    [CHANGER_CHECKS[6], () => checks.directionClasses()],
  ];
  try {
    for (const [name, check] of steps) {
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
    await checks.close();
  }
}
