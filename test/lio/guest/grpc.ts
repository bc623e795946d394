/**
 * gRPC part of the in-VM suite: a prfleet server, two sgio agents (host a: /dev/sg of nexus 1; host b: nexuses
 * 2 and 3, so one agent serves two nodes) and a ControlService client, all over 127.0.0.1 in one process, acting
 * on the real LIO LU through SG_IO. Checks register / reserve / conflict / preempt / unit attention / clear, then
 * removes one node under its agent.
 */
import { rmdir, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAgent, type Agent } from '../../../agent/agent.js';
import { createSgioSource } from '../../../agent/sources.js';
import { createControlClient, type ControlClient } from '../../../src/common/client.js';
import { createLogger } from '../../../src/common/logger.js';
import { Outcome, PrType, type CommandResult } from '../../../src/gen/prfleet/v1/scsi.js';
import { Command } from '../../../src/gen/prfleet/v1/agent.js';
import { createSgioTransport, SGIO_ALLOWED_OPCODES } from '../../../agent/transport/sgio.js';
import type { ScsiDevice } from '../../../agent/transport/transport.js';
import { probeSpc2, spc2Finding } from '../../../src/server/fleet/holds.js';
import { CommandLimiter } from '../../../src/server/fleet/limiter.js';
import { observeUnit, type ReadContext } from '../../../src/server/fleet/observe.js';
import { selectUnits } from '../../../src/server/fleet/selection.js';
import { defaultServerConfig } from '../../../src/server/config.js';
import { createPrfleetServer, type PrfleetServer } from '../../../src/server/server.js';
import { readerOf } from '../../../src/server/commands/pipeline.js';
import { GRPC_CHECKS, type GrpcCheckName } from '../grpc-checks.js';
import { formatLine } from '../protocol.js';
import type { LioLogicalUnit } from './lio-configfs.js';

const KEYS = { a: 0xa1n, b: 0xb1n, c: 0xc1n } as const;

/** Options of runGrpcPart. */
export interface GrpcPartOptions {
  /** The LIO LU (nexus paths in TPG order). */
  readonly lu: LioLogicalUnit;
  /** configfs root, to remove a node under its agent. @default '/sys/kernel/config' */
  readonly configfsRoot?: string;
  readonly print: (line: string) => void;
}

function describeResult(r: CommandResult | undefined): string {
  if (!r) return 'no result';
  return `outcome ${Outcome[r.outcome]} status 0x${r.status.toString(16)} host 0x${r.hostStatus.toString(16)} ${r.message}`.trim();
}

function expectOutcome(r: CommandResult | undefined, outcome: Outcome, what: string): void {
  if (r?.outcome !== outcome)
    throw new Error(`${what}: expected ${Outcome[outcome]}, got ${describeResult(r)}`);
}

function keysOf(r: CommandResult | undefined): bigint[] {
  expectOutcome(r, Outcome.OUTCOME_GOOD, 'READ KEYS');
  if (r?.data?.$case !== 'readKeys')
    throw new Error(`no READ KEYS data: ${String(r?.data?.$case)}`);
  return [...r.data.value.keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
}

const hex = (keys: bigint[]): string => keys.map((k) => `0x${k.toString(16)}`).join(',');

/** Runs the checks in GRPC_CHECKS order; prints one line each; returns the number of failures. */
export async function runGrpcPart(options: GrpcPartOptions): Promise<number> {
  const paths = options.lu.paths;
  const [pathA, pathB, pathC] = paths;
  if (pathA === undefined || pathB === undefined || pathC === undefined)
    throw new Error('the gRPC part needs 3 nexuses');
  const log = createLogger({ level: 'silent', name: 'lio-grpc' });
  let server: PrfleetServer | undefined;
  let client: ControlClient | undefined;
  const agents: Agent[] = [];
  let failures = 0;
  let aborted: string | undefined;
  const target = (agentId: string, path: string) => ({ luId: '', agentId, path });
  const at = { a: target('vm-a', pathA), b: target('vm-b', pathB), c: target('vm-b', pathC) };
  const commandTimeout = { seconds: 20, nanos: 0 };
  const opts = { commandTimeout };
  const prout = { commandTimeout, idempotencyKey: '', reason: 'lio vm test', dryRun: false };
  // RESERVE(6)/RELEASE(6) are not agent commands: a host tool sends them (here a second SG_IO transport).
  let spc2Device: ScsiDevice | undefined;
  const spc2 = (opcode: 0x16 | 0x17) =>
    spc2Device!.execute({
      cdb: Uint8Array.of(opcode, 0, 0, 0, 0, 0),
      dataInLength: 0,
      timeoutMs: 20_000,
    });
  /** The LU as the fleet engine reads it (observe + the SPC-2 probe), through the server's router. */
  const probe = async () => {
    const unit = selectUnits(server!.agents, undefined)[0];
    if (unit === undefined) throw new Error('no LU known to the server');
    const ctx: ReadContext = {
      read: readerOf(server!.router),
      limiter: new CommandLimiter(16, 4),
      timeoutMs: 20_000,
    };
    const obs = await observeUnit(unit, ctx);
    return { obs, probe: await probeSpc2(obs, ctx) };
  };

  const checks: Record<GrpcCheckName, () => Promise<string>> = {
    'two sgio agents connect and report one LIO LU through three paths': async () => {
      server = await createPrfleetServer({
        log,
        config: {
          ...defaultServerConfig(),
          // The guest code runs compiled from a cache directory; the descriptor set stays in the checkout (cwd).
          protosetPath: resolve(process.cwd(), 'src/gen/protoset.binpb'),
          instanceId: 'lio-vm',
          shutdownTimeoutMs: 2000,
          drainGraceMs: 1000,
        },
      });
      const port = await server.listen('127.0.0.1:0');
      const address = `127.0.0.1:${port}`;
      client = createControlClient(address);
      for (const [id, allow] of [
        ['vm-a', [pathA]],
        ['vm-b', [pathB, pathC]],
      ] as const) {
        const source = await createSgioSource({ includeDisks: true });
        const agent = createAgent(
          {
            server: address,
            agentId: id,
            plaintext: true,
            allow,
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
        const { logicalUnits } = await client.listDevices({});
        const connected = logicalUnits.flatMap((lu) =>
          lu.paths
            .filter((p) => p.agentConnected)
            .map(
              (p) =>
                `${lu.luId} ${p.agentId}:${p.path?.path ?? '?'} (target port ${p.path?.relativeTargetPort ?? '?'})`,
            ),
        );
        const luIds = new Set(
          logicalUnits.filter((lu) => lu.paths.some((p) => p.agentConnected)).map((lu) => lu.luId),
        );
        if (connected.length === 3 && luIds.size === 1) return connected.join(', ');
        if (i > 100)
          throw new Error(
            `expected 3 connected paths to one LU, got: ${connected.join(', ') || 'none'}`,
          );
        await sleep(100);
      }
    },
    'REGISTER through every path is GOOD': async () => {
      for (const host of ['a', 'b', 'c'] as const) {
        const { result } = await client!.register({
          target: at[host],
          key: 0n,
          newKey: KEYS[host],
          options: prout,
        });
        expectOutcome(result, Outcome.OUTCOME_GOOD, `REGISTER through host ${host}`);
      }
      return 'a, b, c registered';
    },
    'READ KEYS lists the three keys': async () => {
      const { result } = await client!.readKeys({ target: at.c, options: opts });
      const keys = keysOf(result);
      if (hex(keys) !== '0xa1,0xb1,0xc1') throw new Error(`keys ${hex(keys)}`);
      return `keys ${hex(keys)} generation ${String(result?.generation)}`;
    },
    'RESERVE (exclusive access) through host a is GOOD': async () => {
      const { result } = await client!.reserve({
        target: at.a,
        key: KEYS.a,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        options: prout,
      });
      expectOutcome(result, Outcome.OUTCOME_GOOD, 'RESERVE');
      return describeResult(result);
    },
    'RESERVE through host b is a RESERVATION CONFLICT result (status 18h) and the RPC succeeds':
      async () => {
        const { result } = await client!.reserve({
          target: at.b,
          key: KEYS.b,
          type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
          options: prout,
        });
        expectOutcome(result, Outcome.OUTCOME_RESERVATION_CONFLICT, 'RESERVE from b');
        if (result?.status !== 0x18) throw new Error(`status 0x${result?.status.toString(16)}`);
        return `${describeResult(result)} via ${result.agentId}:${result.path}`;
      },
    'READ RESERVATION through host c shows host a as the holder': async () => {
      const { result } = await client!.readReservation({ target: at.c, options: opts });
      expectOutcome(result, Outcome.OUTCOME_GOOD, 'READ RESERVATION');
      const data = result?.data?.$case === 'readReservation' ? result.data.value : undefined;
      if (!data?.reserved || data.key !== KEYS.a || data.type !== PrType.PR_TYPE_EXCLUSIVE_ACCESS) {
        throw new Error(
          `reservation ${JSON.stringify(data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}`,
        );
      }
      return 'holder 0xa1, exclusive access';
    },
    'PREEMPT of host a by host b is GOOD': async () => {
      const { result } = await client!.preempt({
        target: at.b,
        key: KEYS.b,
        preemptKey: KEYS.a,
        type: PrType.PR_TYPE_EXCLUSIVE_ACCESS,
        abort: false,
        options: prout,
      });
      expectOutcome(result, Outcome.OUTCOME_GOOD, 'PREEMPT');
      return describeResult(result);
    },
    'host a sees REGISTRATIONS PREEMPTED (2Ah/05h) once, then the keys of b and c': async () => {
      const first = await client!.readKeys({ target: at.a, options: opts });
      const ua =
        first.result?.unitAttentions.map((u) =>
          [u.sense?.senseKey, u.sense?.asc, u.sense?.ascq].join('/'),
        ) ?? [];
      if (ua.join() !== '6/42/5')
        throw new Error(`unit attentions ${ua.join(' ') || 'none'} (expected 6/42/5)`);
      if (hex(keysOf(first.result)) !== '0xb1,0xc1')
        throw new Error(`keys ${hex(keysOf(first.result))}`);
      const again = await client!.readKeys({ target: at.a, options: opts });
      if ((again.result?.unitAttentions.length ?? -1) !== 0)
        throw new Error('the unit attention came back');
      return `UA ${first.result?.unitAttentions[0]?.sense?.description ?? ''}; keys ${hex(keysOf(again.result))}`;
    },
    'CLEAR through host b leaves no keys': async () => {
      const { result } = await client!.clear({ target: at.b, key: KEYS.b, options: prout });
      expectOutcome(result, Outcome.OUTCOME_GOOD, 'CLEAR');
      const keys = keysOf((await client!.readKeys({ target: at.b, options: opts })).result);
      if (keys.length !== 0) throw new Error(`keys left: ${hex(keys)}`);
      return 'no keys';
    },
    'an SPC-2 RESERVE(6) through nexus 2 is named with its holder: PRIN conflicts everywhere, TEST UNIT READY passes only through nexus 2':
      async () => {
        spc2Device = await createSgioTransport({
          allowedOpcodes: new Set([...SGIO_ALLOWED_OPCODES, 0x16, 0x17]),
        }).open(pathB);
        const reserved = await spc2(0x16);
        if (reserved.status !== 0)
          throw new Error(`RESERVE(6): status 0x${reserved.status.toString(16)}`);
        const { obs, probe: found } = await probe();
        if (found?.holder?.agentId !== 'vm-b' || found.holder.path !== pathB)
          throw new Error(`probe: ${JSON.stringify(found)}`);
        if (found.prinConflicts.length !== 3)
          throw new Error(`PRIN conflicts: ${found.prinConflicts.join(', ')}`);
        return spc2Finding(obs, found).message;
      },
    'a logical unit reset from agent vm-a (SG_SCSI_RESET) breaks the SPC-2 reservation, and a 29h unit attention follows':
      async () => {
        try {
          const started = performance.now();
          const reset = await server!.router.dispatch(
            'vm-a',
            Command.fromPartial({ path: pathA, kind: { $case: 'luReset', value: {} } }),
            { timeoutMs: 30_000 },
          );
          expectOutcome(reset, Outcome.OUTCOME_GOOD, 'logical unit reset');
          const resetMs = Math.round(performance.now() - started);
          // Each nexus's next command meets what the reset queued (LIO: per ACL), then runs.
          const uas: string[] = [];
          for (const host of ['a', 'b', 'c'] as const) {
            const { result } = await client!.readKeys({ target: at[host], options: opts });
            expectOutcome(
              result,
              Outcome.OUTCOME_GOOD,
              `READ KEYS through ${host} after the reset`,
            );
            for (const u of result?.unitAttentions ?? [])
              uas.push(
                `${host}: ${u.sense?.asc?.toString(16)}h/${u.sense?.ascq?.toString(16).padStart(2, '0')}h ${u.sense?.description ?? ''}`,
              );
          }
          // Measured on 6.1: every nexus (the resetting one too) gets 29h/03h, as the lio profile's
          // luResetUnitAttention says.
          const each = ['a', 'b', 'c'].map(
            (h) => uas.filter((u) => u.startsWith(`${h}: 29h/03h`)).length,
          );
          if (each.join() !== '1,1,1')
            throw new Error(
              `expected one 29h/03h per nexus after the reset, saw: ${uas.join('; ') || 'none'}`,
            );
          const { probe: left } = await probe();
          if (left !== undefined) throw new Error(`still held: ${JSON.stringify(left)}`);
          return `reset GOOD in ${resetMs} ms; TEST UNIT READY no longer conflicts; unit attentions: ${uas.join('; ')}`;
        } finally {
          await spc2(0x17).catch(() => undefined); // released already when the reset worked
          await spc2Device?.close().catch(() => undefined);
        }
      },
    'a vanished node is an OS error result and its agent keeps serving its other node':
      async () => {
        // Remove nexus 3's LUN: the kernel deletes /dev/sg of host c under agent vm-b, which still has it open.
        const lunDir = join(
          options.configfsRoot ?? '/sys/kernel/config',
          'target',
          'loopback',
          'naa.5001405000000001',
          `tpgt_${options.lu.tpgs[2] ?? 3}`,
          'lun',
          'lun_0',
        );
        for (const name of ['lu', 'pr_lun'])
          await unlink(join(lunDir, name)).catch(() => undefined);
        await rmdir(lunDir);
        const gone = await client!.readKeys({ target: at.c, options: opts }).then(
          (r) => r.result,
          (e: unknown) => e,
        );
        // Either the agent answers with the errno (it still listed the node) or, after its rescan, the server
        // no longer knows the path (NOT_FOUND): both are fine; a hang or a GOOD answer is not.
        let vanished: string;
        if (gone instanceof Error) {
          if (!/NOT_FOUND|not found|unknown path/i.test(gone.message)) throw gone;
          vanished = `server: ${gone.message}`;
        } else {
          const r = gone as CommandResult | undefined;
          expectOutcome(r, Outcome.OUTCOME_OS_ERROR, 'READ KEYS through the removed node');
          if (!/ENODEV|ENXIO|ENOENT|EBADF/.test(r?.message ?? ''))
            throw new Error(`unexpected OS error: ${r?.message ?? ''}`);
          vanished = `errno ${String(r?.errno)}: ${r?.message ?? ''}`;
        }
        const still = await client!.readKeys({ target: at.b, options: opts });
        expectOutcome(
          still.result,
          Outcome.OUTCOME_GOOD,
          'READ KEYS through host b after the removal',
        );
        return `${vanished}; host b still answers`;
      },
  };

  try {
    for (const name of GRPC_CHECKS) {
      const started = performance.now();
      if (aborted !== undefined) {
        failures++;
        options.print(
          formatLine({ t: 'check', part: 'grpc', name, ok: false, detail: `not run: ${aborted}` }),
        );
        continue;
      }
      try {
        const detail = await Promise.race([
          checks[name](),
          sleep(60_000, undefined, { ref: false }).then(() => {
            throw new Error('no answer within 60 s');
          }),
        ]);
        options.print(
          formatLine({
            t: 'check',
            part: 'grpc',
            name,
            ok: true,
            detail,
            ms: Math.round(performance.now() - started),
          }),
        );
      } catch (e) {
        failures++;
        const detail = e instanceof Error ? e.message : String(e);
        options.print(
          formatLine({
            t: 'check',
            part: 'grpc',
            name,
            ok: false,
            detail,
            ms: Math.round(performance.now() - started),
          }),
        );
        // Later checks build on earlier ones; only the setup failing makes the rest meaningless.
        if (name === GRPC_CHECKS[0]) aborted = `setup failed: ${detail}`;
      }
    }
  } finally {
    await Promise.allSettled(agents.map((a) => a.stop()));
    client?.close();
    await server?.shutdown(2000).catch(() => undefined);
  }
  return failures;
}
