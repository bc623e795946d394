/**
 * Entry point of the in-VM suite (runs chrooted in the host root, see test/scsi-vm/guest/scenario-exec.sh):
 *   node main.js --out <dir> [--parts conformance,grpc,changer,random] [--only id,id] [--changer-handler <binary>]
 *                [--seed <n>] [--random-count <n>]
 * Prints `PRFLEET-LIO <json>` lines (test/lio/protocol.ts) and exits 0 when everything passed.
 */
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatLine } from '../protocol.js';
import { runConformance } from './conformance.js';
import { createLioTopology } from './lio-configfs.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      parts: { type: 'string', default: 'conformance' },
      only: { type: 'string' },
      nexuses: { type: 'string', default: '3' },
      'changer-handler': { type: 'string' },
      'rc-file': { type: 'string' },
      seed: { type: 'string' },
      'random-count': { type: 'string', default: '0' },
    },
  });
  rcFile = values['rc-file'];
  const parts = (values.parts ?? '').split(',').filter(Boolean);
  const print = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const started = performance.now();
  // How long node took to start (over 9p) and when, in guest uptime, the suite began.
  const guestUptime = Number(
    (await readFile('/proc/uptime', 'utf8').catch(() => '0')).split(' ')[0],
  );
  print(
    formatLine({
      t: 'info',
      name: 'start',
      node: process.version,
      parts,
      nodeStartMs: Math.round(process.uptime() * 1000),
      guestUptimeS: guestUptime,
    }),
  );
  let failures = 0;
  // gRPC first: it needs the LU as lio-setup.sh made it; the conformance part recreates LUs as it goes.
  if (parts.includes('grpc')) {
    const { runGrpcPart } = await import('./grpc.js');
    const lu = await createLioTopology({ nexuses: Number(values.nexuses) }).primary();
    failures += await runGrpcPart({ lu, print });
  }
  // The changer before the disk scenarios: their last one (LIO's PREEMPT AND ABORT hang) wedges the tcm_loop host.
  if (parts.includes('changer')) {
    const { runChangerPart } = await import('./changer.js');
    const handler = values['changer-handler'];
    if (handler === undefined) throw new Error('--parts changer needs --changer-handler');
    failures += await runChangerPart({
      handler,
      nexuses: Number(values.nexuses),
      ...(values.out ? { outDir: values.out } : {}),
      print,
    });
  }
  // Random sequences before the disk scenarios too (same reason), on the LU the gRPC part leaves.
  if (parts.includes('random')) {
    const { runRandomPart } = await import('./random.js');
    if (values.seed === undefined) throw new Error('--parts random needs --seed');
    failures += await runRandomPart({
      seed: Number(values.seed),
      count: Number(values['random-count']),
      nexuses: Number(values.nexuses),
      freshPrimary: !parts.includes('grpc'),
      ...(values.out ? { outDir: values.out } : {}),
      print,
    });
  }
  if (parts.includes('conformance')) {
    failures += await runConformance({
      ...(values.out ? { outDir: values.out } : {}),
      ...(values.only ? { only: values.only.split(',') } : {}),
      nexuses: Number(values.nexuses),
      freshPrimary: !parts.includes('grpc') && !parts.includes('random'),
      print,
    });
  }
  print(
    formatLine({ t: 'info', name: 'end', failures, ms: Math.round(performance.now() - started) }),
  );
  return failures;
}

let rcFile: string | undefined;

/**
 * Ends the run. The exit status goes to --rc-file first: after LIO's PREEMPT AND ABORT hang an SG_IO ioctl never
 * returns, and node's exit joins libuv's worker threads, so the process may never end; in-vm.sh stops waiting
 * for it once the file exists.
 */
function finish(code: number): void {
  if (rcFile !== undefined) writeFileSync(rcFile, `${code}\n`);
  process.exit(code);
}

main().then(
  (failures) => finish(failures === 0 ? 0 : 1),
  (e: unknown) => {
    process.stdout.write(
      formatLine({
        t: 'info',
        name: 'crash',
        error: e instanceof Error ? (e.stack ?? e.message) : String(e),
      }) + '\n',
    );
    finish(2);
  },
);
