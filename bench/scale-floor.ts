/**
 * `node --expose-gc dist/bench/scale-floor.js [raw-tcp|raw-http2|grpc-js|nice-grpc]…`: what one idle connection
 * costs a Node server before any prfleet code runs, measured the way bench/scale.ts measures prfleet-server (a
 * child server process; RSS with N idle peers minus RSS with none, both after full collections, smallest of 4
 * readings), so its "server memory per idle agent" can be read against the floor of the stack on the same
 * machine. Each peer has its own TCP connection and, from raw-http2 on, one open bidirectional stream on which it
 * sent a 200-byte message and got a 20-byte one, as an idle agent after Hello/Welcome:
 *
 *  - raw-tcp:   node:net, a socket per peer;
 *  - raw-http2: node:http2 server, a session and one stream per peer (what grpc-js is built on);
 *  - grpc-js:   @grpc/grpc-js server, one bidi call per peer, channelz off (as prfleet-server);
 *  - nice-grpc: nice-grpc over grpc-js, an async-generator bidi handler, no middleware, channelz off.
 *
 * N = PRFLEET_BENCH_AGENTS (1000). The peers share this process (grpc-js clients with their own subchannel pool).
 * 50 peers connect and leave first (warm-up), so one-time allocations are in the baseline. Readings move by
 * 1–3 KiB per connection between runs on a shared machine: run it twice. `PRFLEET_BENCH_HEAP_SNAPSHOTS=<dir>` also
 * prints what each connection retains in heap snapshots, by kind of object (bench/heap-snapshot.ts).
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { createServer as createNiceServer } from 'nice-grpc';
import { retainedPerConnection, takeSnapshot, writeSnapshotHook } from './heap-snapshot.js';

const N = Number(process.env['PRFLEET_BENCH_AGENTS'] ?? 1000);
const SNAPSHOT_DIR = process.env['PRFLEET_BENCH_HEAP_SNAPSHOTS'];
const KINDS = ['raw-tcp', 'raw-http2', 'grpc-js', 'nice-grpc'] as const;
type Kind = (typeof KINDS)[number];
const PATH = '/prfleet.v1.AgentService/Connect';
const same = (b: Buffer) => b;
const grpcDefinition = {
  Connect: {
    path: PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: same,
    requestDeserialize: same,
    responseSerialize: same,
    responseDeserialize: same,
  },
};
const CHANNEL_OPTIONS = { 'grpc.enable_channelz': 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssKiB(): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) : Number.NaN;
}

/** The server side, in the child: listens, holds every connection/stream, answers memory readings. */
async function serve(kind: Kind): Promise<number> {
  const held: unknown[] = [];
  switch (kind) {
    case 'raw-tcp': {
      const server = net.createServer((socket) => {
        held.push(socket);
        socket.on('data', () => undefined);
        socket.write(Buffer.alloc(20));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as net.AddressInfo).port;
    }
    case 'raw-http2': {
      const server = http2.createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
      server.on('stream', (stream) => {
        held.push(stream);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.on('data', () => undefined);
        stream.write(Buffer.alloc(20));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as net.AddressInfo).port;
    }
    case 'grpc-js': {
      const server = new grpc.Server(CHANNEL_OPTIONS);
      server.addService(grpcDefinition, {
        Connect(call: grpc.ServerDuplexStream<Buffer, Buffer>) {
          held.push(call);
          call.on('data', () => undefined);
          call.write(Buffer.alloc(20));
        },
      });
      return new Promise((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) =>
          e ? reject(e) : resolve(port),
        ),
      );
    }
    case 'nice-grpc': {
      const server = createNiceServer(CHANNEL_OPTIONS);
      const definition = {
        connect: {
          ...grpcDefinition.Connect,
          requestStream: true,
          responseStream: true,
          options: {},
        },
      } as const;
      server.add(definition, {
        async *connect(requests: AsyncIterable<Buffer>) {
          const iterator = requests[Symbol.asyncIterator]();
          await iterator.next();
          void (async () => {
            while (!(await iterator.next()).done);
          })();
          yield Buffer.alloc(20);
          await new Promise((r) => held.push(r)); // idle until the peer goes
        },
      });
      return server.listen('127.0.0.1:0');
    }
  }
}

/** One peer per call, each on its own connection; returns a closer. */
function dial(kind: Kind, port: number): () => void {
  switch (kind) {
    case 'raw-tcp': {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      socket.write(Buffer.alloc(200));
      return () => socket.destroy();
    }
    case 'raw-http2': {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', () => undefined);
      const stream = session.request({
        ':method': 'POST',
        ':path': PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('data', () => undefined);
      stream.on('error', () => undefined);
      stream.write(Buffer.alloc(200));
      return () => session.destroy();
    }
    case 'grpc-js':
    case 'nice-grpc': {
      const Client = grpc.makeGenericClientConstructor(grpcDefinition, 'AgentService');
      const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
      });
      const call = (
        client as unknown as { Connect(): grpc.ClientDuplexStream<Buffer, Buffer> }
      ).Connect();
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.write(Buffer.alloc(200));
      return () => {
        call.cancel();
        client.close();
      };
    }
  }
}

/**
 * gc()'s options for a memory-reducing full collection (what V8 does under memory pressure or from its memory
 * reducer): unlike a plain gc() it also shrinks the young generation, which grows while many peers connect.
 */
export const REDUCING_GC = { type: 'major', execution: 'sync', flavor: 'last-resort' } as const;
/** The signal bench/scale.ts's children answer with such a collection. */
export const REDUCING_GC_SIGNAL = 'SIGURG';

/** One floor reading: RSS after GC per idle connection, and what a heap snapshot retains per connection if taken. */
export interface FloorReading {
  readonly perConnectionKiB: number;
  /** The same after memory-reducing collections (REDUCING_GC). */
  readonly reducedPerConnectionKiB: number;
  readonly retainedKiB?: number;
  /** Of retainedKiB, compiled code, bytecode and feedback. */
  readonly codeKiB?: number;
  /** The reading as this bench prints it. */
  readonly line: string;
}

/** Measures one kind of server with N idle peers in a child process (this file run with --serve). */
export async function measureFloor(kind: Kind): Promise<FloorReading> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', kind], {
    execArgv: [
      '--expose-gc',
      ...(SNAPSHOT_DIR === undefined
        ? []
        : [`--import=${pathToFileURL(writeSnapshotHook(SNAPSHOT_DIR)).href}`]),
    ],
  });
  const next = () => new Promise<Record<string, number>>((r) => child.once('message', r));
  try {
    const { port } = await next();
    const reading = async (what: 'read' | 'read-reduced' = 'read') => {
      let min = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 4; i++) {
        await sleep(800);
        child.send(what);
        min = Math.min(min, (await next())['rss'] ?? Number.NaN);
      }
      return min;
    };
    // Warm-up: a first batch of peers, gone again, so that what every server allocates once on its first
    // connections (code, module state, pools) is in the baseline, not spread over the N measured ones.
    const warm = Array.from({ length: 50 }, () => dial(kind, port ?? 0));
    await sleep(1_500);
    for (const close of warm) close();
    await sleep(1_500);
    const before = await reading();
    const reducedBefore = await reading('read-reduced');
    const snapshotBefore =
      SNAPSHOT_DIR === undefined ? undefined : await takeSnapshot(child.pid ?? 0, SNAPSHOT_DIR);
    const closers: (() => void)[] = [];
    for (let i = 0; i < N; i++) {
      closers.push(dial(kind, port ?? 0));
      if (i % 100 === 99) await sleep(100);
    }
    await sleep(3_000);
    const after = await reading();
    const reducedAfter = await reading('read-reduced');
    let retained = '';
    let retainedKiB: number | undefined;
    let codeKiB: number | undefined;
    if (SNAPSHOT_DIR !== undefined && snapshotBefore !== undefined) {
      const diff = retainedPerConnection(
        snapshotBefore,
        await takeSnapshot(child.pid ?? 0, SNAPSHOT_DIR),
        N,
      );
      retainedKiB = diff.totalKiB;
      codeKiB = diff.codeKiB;
      retained = ` (RSS not comparable: the first snapshot grew it); heap snapshots: ${diff.totalKiB.toFixed(1)} KiB retained per connection (compiled code ${diff.codeKiB.toFixed(1)})\n${diff.lines.map((l) => `    ${l}`).join('\n')}`;
    }
    for (const close of closers) close();
    const perConnectionKiB = (after - before) / N;
    const reducedPerConnectionKiB = (reducedAfter - reducedBefore) / N;
    return {
      perConnectionKiB,
      reducedPerConnectionKiB,
      ...(retainedKiB === undefined ? {} : { retainedKiB }),
      ...(codeKiB === undefined ? {} : { codeKiB }),
      line: `${kind.padEnd(9)} ${perConnectionKiB.toFixed(1)} KiB per idle connection (RSS after GC, ${N} connections; ${reducedPerConnectionKiB.toFixed(1)} after memory-reducing GCs)${retained}`,
    };
  } finally {
    child.kill();
  }
}

// bench/scale.ts imports measureFloor; only this file run by itself (or forked with --serve) acts.
const isMain = process.argv[1] === fileURLToPath(import.meta.url);
if (isMain && process.argv[2] === '--serve') {
  const port = await serve(process.argv[3] as Kind);
  process.on('message', (what) => {
    const gc = (globalThis as { gc?: (options?: typeof REDUCING_GC) => void }).gc;
    if (what === 'read-reduced') gc?.(REDUCING_GC);
    else {
      gc?.();
      gc?.();
    }
    process.send?.({ rss: rssKiB() });
  });
  process.send?.({ port });
} else if (isMain) {
  const asked = process.argv
    .slice(2)
    .filter((a): a is Kind => (KINDS as readonly string[]).includes(a));
  for (const kind of asked.length > 0 ? asked : KINDS)
    process.stdout.write(`${(await measureFloor(kind)).line}\n`);
  process.exit(0);
}
