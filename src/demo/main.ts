#!/usr/bin/env node
/**
 * `make demo`: starts prfleet-server on a free port and prfleet-sim with examples/fabric-demo.yaml (three hosts
 * sharing two SuperLoaders), runs the narrated scenario with real RPCs, and stops both. Exits 0 when the story
 * happened as told; on any error (or Ctrl-C) it stops what it started and exits non-zero.
 */
import { resolve } from 'node:path';
import { delay } from '../common/delay.js';
import { connectControl } from '../cli/client.js';
import { connectFleet } from '../cli/fleet.js';
import {
  builtBinaries,
  repoRoot,
  spawnNode,
  startServerProcess,
  startSimProcess,
  type ChildHandle,
} from './processes.js';
import { runScenario } from './scenario.js';

const write = (text: string) => process.stdout.write(text);
const children: ChildHandle[] = [];
let stopping: Promise<void> | undefined;

/** Stops every child (SIGTERM, then SIGKILL after 5 s), once. */
function stopAll(): Promise<void> {
  stopping ??= Promise.all(children.map((child) => child.stop({ graceMs: 5000 }))).then(
    () => undefined,
  );
  return stopping;
}

// A closed stdout (`make demo | head`) must still stop the children, not crash past them.
process.stdout.on('error', () => {
  void stopAll().then(() => process.exit(1));
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    write(`\n${signal}: stopping prfleet-sim and prfleet-server …\n`);
    void stopAll().then(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  const fabric = resolve(repoRoot(), 'examples/fabric-demo.yaml');
  write('prfleet demo: persistent reservations on a fleet of tape loaders.\n');
  write(
    'Starting prfleet-server on a free port of 127.0.0.1 in PLAINTEXT (asked for explicitly: a loopback demo; ' +
      'production uses TLS with agent certificates, see docs/security.md) …\n',
  );
  const server = await startServerProcess();
  children.push(server.handle);
  write(
    `Server listening on ${server.address} (store: ${server.dataDir ? `embedded PGlite in ${server.dataDir}, removed at the end` : 'as PRFLEET_STORE / PRFLEET_DATA_DIR / DATABASE_URL say'}).\n` +
      'Starting prfleet-sim with examples/fabric-demo.yaml …\n',
  );
  const sim = await startSimProcess({ address: server.address, fabric });
  children.push(sim);
  // The web fleet view is on the server's one port (plaintext demo without tokens: no login).
  const viewUrl = `http://${server.address}/`;
  write(
    `Fleet view: ${viewUrl} (live: it follows the scenario, and stays up until the demo ends).\n`,
  );
  // A watcher, as an operator or a job scheduler would run one: `prfleet watch` prints what happens to the
  // reservations while the story unfolds (its lines start with "│ watch").
  write(
    'Starting `prfleet watch --after 0 --kind agent-connected --kind prout --kind unit-attention --kind reservation-changed` beside the story …\n',
  );
  const watchLines: string[] = [];
  const watcher = spawnNode(
    builtBinaries().cli,
    [
      ...['--server', server.address, '--plaintext', 'watch', '--after', '0'],
      ...['--kind', 'agent-connected', '--kind', 'prout'],
      ...['--kind', 'unit-attention', '--kind', 'reservation-changed'],
    ],
    {
      name: 'prfleet watch',
      onLine: (line) => {
        watchLines.push(line);
        write(`  │ watch  ${line}\n`);
      },
    },
  );
  children.push(watcher);
  // The story starts once the watcher follows (it has seen the three agents connect).
  for (
    const started = Date.now();
    !watchLines.some((l) => l.includes('AGENT-CONNECTED: host-c'));
  ) {
    if (watcher.hasExited() || Date.now() - started > 30_000)
      throw new Error(`prfleet watch did not start: ${watcher.lines.slice(-5).join(' | ')}`);
    await delay(100);
  }
  const connection = connectControl(server.address, { plaintext: true });
  const fleet = connectFleet(server.address, { plaintext: true });
  try {
    await runScenario(connection.client, { write }, fleet.client, () => watchLines);
  } finally {
    connection.close();
    fleet.close();
  }
  await holdForViewer(viewUrl);
  write('\nStopping prfleet watch, prfleet-sim and prfleet-server …\n');
  await watcher.stop({ graceMs: 2000 });
  const [serverExit, simExit] = [server.handle.exited, sim.exited];
  await stopAll();
  const codes = await Promise.all([serverExit, simExit]);
  write(
    `Stopped (server exit ${String(codes[0].code)}, sim exit ${String(codes[1].code)}). Demo complete.\n`,
  );
}

/**
 * At a terminal, the demo keeps serving the fleet view until Enter (or Ctrl-C); without one (CI, a pipe) it ends
 * right away.
 */
async function holdForViewer(url: string): Promise<void> {
  if (process.stdin.isTTY !== true) return;
  write(`\nThe fleet view stays at ${url} until you press Enter (Ctrl-C also ends the demo).\n`);
  await new Promise<void>((resolve) => {
    process.stdin.resume();
    process.stdin.once('data', () => resolve());
  });
  process.stdin.pause();
}

main().then(
  () => {
    process.exitCode = 0;
  },
  async (error: unknown) => {
    process.stderr.write(
      `\ndemo failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    for (const child of children) {
      if (!child.hasExited()) continue;
      process.stderr.write(
        `${child.name} had exited; its last output:\n${child.lines.slice(-10).join('\n')}\n`,
      );
    }
    await stopAll();
    process.exitCode = 1;
  },
);
