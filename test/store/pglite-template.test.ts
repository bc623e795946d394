// A new PGlite data directory is loaded from the initialised one scripts/bundle.mjs ships (instead of initdb), an
// existing one is opened as it is, and the loaded directory is owner-only like one initdb made.
import { PGlite } from '@electric-sql/pglite';
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPgliteDb, pgliteTemplateName } from '../../src/server/store/pglite-db.js';

const scratch = await mkdtemp(path.join(tmpdir(), 'prfleet-pglite-template-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));
const templateDir = path.join(scratch, 'templates');

/** Whether the marker table the template was made with is in `dataDir`'s database. */
async function hasMarker(dataDir: string): Promise<boolean> {
  const db = await createPgliteDb({ dataDir, templateDir });
  try {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'template_marker'`,
    );
    return rows[0]?.n === 1;
  } finally {
    await db.close();
  }
}

/** Every entry under `dir` whose mode gives group or others any access. */
async function notOwnerOnly(dir: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (entry: string): Promise<void> => {
    const stat = await lstat(entry);
    if ((stat.mode & 0o077) !== 0) found.push(entry);
    if (stat.isDirectory())
      for (const name of await readdir(entry)) await visit(path.join(entry, name));
  };
  await visit(dir);
  return found;
}

describe('PGlite data directory template', () => {
  it('loads a new data directory from the template, owner-only, and reopens it as it is', async () => {
    // A template that is recognisable: initdb's output plus a marker table.
    const source = await PGlite.create(path.join(scratch, 'source'));
    await source.exec('CREATE TABLE template_marker (x int)');
    const dump = await source.dumpDataDir('gzip');
    await source.close();
    await mkdir(templateDir);
    await writeFile(
      path.join(templateDir, pgliteTemplateName()),
      Buffer.from(await dump.arrayBuffer()),
    );

    const fresh = path.join(scratch, 'fresh');
    expect(await hasMarker(fresh)).toBe(true);
    expect(await notOwnerOnly(fresh)).toEqual([]);
    const db = await createPgliteDb({ dataDir: fresh, templateDir });
    await db.exec('CREATE TABLE kept (x int)');
    await db.close();
    // Reopened: not loaded again from the template (the table created since is still there).
    const again = await createPgliteDb({ dataDir: fresh, templateDir });
    expect(
      (await again.query(`SELECT 1 FROM pg_tables WHERE tablename = 'kept'`)).rows,
    ).toHaveLength(1);
    await again.close();
  }, 300_000);

  it('opens an existing data directory without the template, and a template of another version is not used', async () => {
    const other = path.join(scratch, 'other-version');
    await mkdir(other);
    await writeFile(path.join(other, 'pglite-template-0.0.0.tar.gz'), 'not a dump');
    const made = path.join(scratch, 'made-by-initdb');
    const db = await createPgliteDb({ dataDir: made, templateDir: other });
    await db.close();
    // Opened by initdb (loading "not a dump" would have failed); then, existing, not loaded over from a template.
    expect(await hasMarker(made)).toBe(false);
  }, 300_000);
});
