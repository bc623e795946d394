/**
 * `prfleet history list|verify` (src/cli/history.ts) against a real server with a durable store (PostgreSQL
 * when reachable, else an in-memory PGlite) and emulated agents.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Command, Option } from '@commander-js/extra-typings';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PrType } from '../../src/gen/prfleet/v1/scsi.js';
import { HISTORY_BROKEN_EXIT_CODE, registerHistoryCommands } from '../../src/cli/history.js';
import { createCli } from '../../src/cli/runner.js';
import { openStore, type Store } from '../../src/server/store/index.js';
import { startEmulatedAgents } from '../helpers/agents.js';
import { startTestServer } from '../helpers/server.js';

const TEST_DATABASE_URL =
  process.env['PRFLEET_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const LU = 'naa.5000e11100000002';
const schema = `prfleet_cli_${process.pid}_${randomBytes(3).toString('hex')}`;
let store: Store;
let usesPg = false;

beforeAll(async () => {
  try {
    store = await openStore({ databaseUrl: TEST_DATABASE_URL, schema });
    usesPg = true;
  } catch {
    store = await openStore({ inMemory: true }); // 5–30 s of initdb
  }
}, 180_000);

afterAll(async () => {
  await store?.close();
  if (!usesPg) return;
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
});

/** Runs `prfleet <argv>` with the history commands against `address`; returns exit code and output. */
async function prfleet(address: string, argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const state = { exitCode: -1 };
  const program = new Command()
    .name('prfleet')
    .addOption(new Option('-s, --server <host:port>', 'server').default(address))
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['table', 'json'] as const)
        .default('table'),
    )
    .option('--plaintext', 'the test server is plaintext', true)
    .exitOverride();
  registerHistoryCommands(
    createCli(program, { stdout: (text) => (out += text), stderr: (text) => (out += text) }, state),
  );
  await program.parseAsync(argv, { from: 'user' });
  return { code: state.exitCode, out };
}

describe('prfleet history', () => {
  it('lists the PROUTs sent as a table and as JSON, and verify exits 0 intact and 44 after an edit', async () => {
    const { address, client } = await startTestServer({ deps: { store } });
    await startEmulatedAgents({ address });
    await expect
      .poll(
        async () =>
          (await client.listDevices({})).logicalUnits.find((lu) => lu.luId === LU)?.paths.length ??
          0,
      )
      .toBeGreaterThanOrEqual(3);
    const a = { luId: LU, agentId: 'host-a', path: '/dev/sg2' };
    const b = { luId: LU, agentId: 'host-b', path: '/dev/sg1' };
    await client.register({ target: a, newKey: 0x0a0an, options: { reason: 'backup window' } });
    await client.reserve({ target: a, key: 0x0a0an, type: PrType.PR_TYPE_WRITE_EXCLUSIVE });
    await client.register({ target: b, newKey: 0x0b0bn });
    await client.reserve({ target: b, key: 0x0b0bn, type: PrType.PR_TYPE_WRITE_EXCLUSIVE });

    const table = await prfleet(address, ['history', 'list', '--lu', LU]);
    expect(table.code).toBe(0);
    expect(table.out).toContain('host-a:/dev/sg2');
    expect(table.out).toContain('0x0000000000000a0a');
    expect(table.out).toContain('backup window');
    expect(table.out.split('\n').filter((l) => l.includes('register'))).toHaveLength(2);

    const json = await prfleet(address, [
      '-o',
      'json',
      'history',
      'list',
      '--lu',
      LU,
      '--limit',
      '3',
    ]);
    const { entries } = JSON.parse(json.out) as { entries: Record<string, unknown>[] };
    expect(entries.map((e) => [e['action'], e['reservationKey'], e['outcome']])).toEqual([
      ['PROUT_ACTION_REGISTER', '0x0000000000000000', 'OUTCOME_GOOD'],
      ['PROUT_ACTION_RESERVE', '0x0000000000000a0a', 'OUTCOME_GOOD'],
      ['PROUT_ACTION_REGISTER', '0x0000000000000000', 'OUTCOME_GOOD'],
    ]);
    const rest = await prfleet(address, [
      '-o',
      'json',
      'history',
      'list',
      '--lu',
      LU,
      '--after',
      String(entries[2]!['seq']),
    ]);
    expect(
      (JSON.parse(rest.out) as { entries: Record<string, unknown>[] }).entries.map(
        (e) => e['outcome'],
      ),
    ).toEqual(['OUTCOME_RESERVATION_CONFLICT']);

    const intact = await prfleet(address, ['history', 'verify']);
    expect(intact).toMatchObject({
      code: 0,
      out: expect.stringMatching(/^History intact: 4 entries/),
    });

    await store.db.exec(
      `ALTER TABLE history DISABLE TRIGGER history_append_only; UPDATE history SET actor = 'nobody' WHERE seq = 2; ALTER TABLE history ENABLE TRIGGER history_append_only`,
    );
    const broken = await prfleet(address, ['-o', 'json', 'history', 'verify']);
    expect(broken.code).toBe(HISTORY_BROKEN_EXIT_CODE);
    expect(JSON.parse(broken.out)).toMatchObject({
      ok: false,
      checked: 1,
      fault: { problem: 'HISTORY_PROBLEM_EDITED', seq: 2 },
    });
    const words = await prfleet(address, ['history', 'verify']);
    expect(words.out).toMatch(/^History BROKEN at entry 2 \(edited\)/);
  }, 120_000);

  it('exits 82 (FAILED_PRECONDITION) with the reason when the server keeps no history', async () => {
    const { address } = await startTestServer();
    const { code, out } = await prfleet(address, ['history', 'verify']);
    expect(code).toBe(82);
    expect(out).toContain('without PRFLEET_STORE=memory');
  });
});
