/**
 * Heap snapshots for the memory benches (`PRFLEET_BENCH_HEAP_SNAPSHOTS=<dir>`): what N idle connections keep, by
 * kind of object, without the noise of RSS. A child writes a snapshot when it gets {@link SNAPSHOT_SIGNAL} (the
 * hook below, loaded with `--import`); {@link retainedPerConnection} compares two snapshots.
 *
 * Snapshots count what V8 sees: JS objects and the native memory Node reports for them (nghttp2's per-session
 * memory shows up as `native:Node / nghttp2_memory`). Taking one forces a full collection first.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The signal a child answers with a heap snapshot in its working directory (SIGUSR1 would start the inspector). */
export const SNAPSHOT_SIGNAL = 'SIGWINCH';

/** Writes the child-side hook into `dir` and returns its path, for `--import`. */
export function writeSnapshotHook(dir: string): string {
  const hook = join(dir, 'heap-snapshot-on-signal.mjs');
  writeFileSync(
    hook,
    "import { writeHeapSnapshot } from 'node:v8';\n" +
      `process.on('${SNAPSHOT_SIGNAL}', () => writeHeapSnapshot(process.env.PRFLEET_BENCH_HEAP_SNAPSHOTS + '/' + process.pid + '-' + Date.now() + '.heapsnapshot'));\n`,
  );
  return hook;
}

/** Asks `pid` for a snapshot and returns its file once written completely. */
export async function takeSnapshot(pid: number, dir: string): Promise<string> {
  const mine = () => readdirSync(dir).filter((f) => f.startsWith(`${pid}-`));
  const before = new Set(mine());
  process.kill(pid, SNAPSHOT_SIGNAL);
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const file = mine().find((f) => !before.has(f));
    if (file === undefined) continue;
    // writeHeapSnapshot writes synchronously in the child: the file is complete once it parses.
    const path = join(dir, file);
    try {
      JSON.parse(readFileSync(path, 'utf8'));
      return path;
    } catch {
      // still being written
    }
  }
}

interface Tally {
  bytes: number;
  count: number;
}

/** Self size and count per `type:name` (strings lumped together). */
function tally(file: string): Map<string, Tally> {
  const snapshot = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const byKind = new Map<string, Tally>();
  const { nodes, strings } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + (typeAt ?? 0)] ?? 0] ?? '?';
    const name = type.includes('string') ? '' : (strings[nodes[i + (nameAt ?? 1)] ?? 0] ?? '');
    const key = `${type}:${name.slice(0, 60)}`;
    const entry = byKind.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += nodes[i + (sizeAt ?? 3)] ?? 0;
    entry.count += 1;
    byKind.set(key, entry);
  }
  return byKind;
}

/** Bytes retained per connection between two snapshots (`after` with `connections` more), total and top kinds. */
export function retainedPerConnection(
  before: string,
  after: string,
  connections: number,
  top = 12,
): { totalKiB: number; codeKiB: number; lines: string[] } {
  const a = tally(before);
  const b = tally(after);
  let total = 0;
  const rows: { key: string; bytes: number; count: number }[] = [];
  for (const [key, { bytes, count }] of b) {
    const old = a.get(key) ?? { bytes: 0, count: 0 };
    rows.push({
      key,
      bytes: (bytes - old.bytes) / connections,
      count: (count - old.count) / connections,
    });
  }
  for (const [key, { bytes }] of a) if (!b.has(key)) total -= bytes / connections;
  let code = 0;
  for (const row of rows) {
    total += row.bytes;
    // Compiled code, bytecode and feedback (V8's `code` node type): what the run made V8 compile, not per agent.
    if (row.key.startsWith('code:')) code += row.bytes;
  }
  rows.sort((x, y) => y.bytes - x.bytes);
  return {
    totalKiB: total / 1024,
    codeKiB: code / 1024,
    lines: rows
      .slice(0, top)
      .map(
        (r) => `${r.bytes.toFixed(0).padStart(7)} B  ${r.count.toFixed(1).padStart(5)}×  ${r.key}`,
      ),
  };
}
