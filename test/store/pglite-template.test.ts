// A new PGlite data directory is loaded from the initialised one scripts/bundle.mjs ships (instead of initdb), an
// existing one is opened as it is, and the loaded directory is owner-only like one initdb made.
import { PGlite } from '@electric-sql/pglite';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UNPACKING, unpackDataDirTemplate } from '../../src/server/store/data-dir-template.js';
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

/** A gzipped ustar archive of regular files (name → content), as PGlite's dump writes them. */
function archiveOf(files: Record<string, string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const header = Buffer.alloc(512);
    header.write(name, 0);
    header.write('0000600\0', 100);
    header.write(`${Buffer.byteLength(content).toString(8).padStart(11, '0')}\0`, 124);
    header.write('0', 156);
    header.write('ustar\0' + '00', 257);
    const data = Buffer.alloc(Math.ceil(Buffer.byteLength(content) / 512) * 512);
    data.write(content);
    blocks.push(header, data);
  }
  return gzipSync(Buffer.concat([...blocks, Buffer.alloc(1024)]));
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

  it('unpacks the template again into a directory a start cut off before its PG_VERSION', async () => {
    const cut = path.join(scratch, 'cut-off');
    await mkdir(path.join(cut, 'base'), { recursive: true });
    await writeFile(path.join(cut, UNPACKING), '');
    await writeFile(path.join(cut, 'base', 'half-written'), 'x');
    // Without PG_VERSION the directory was not fully unpacked: the template (with its marker) goes in again.
    expect(await hasMarker(cut)).toBe(true);
    expect(await notOwnerOnly(cut)).toEqual([]);
  }, 300_000);

  it('refuses a non-empty directory that holds no database, and changes nothing in it', async () => {
    const foreign = path.join(scratch, 'somebody-else');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'notes.txt'), 'mine', { mode: 0o644 });
    await chmod(path.join(foreign, 'notes.txt'), 0o644);
    await expect(createPgliteDb({ dataDir: foreign })).rejects.toThrow(
      /is not empty and holds no database \(no PG_VERSION\)/,
    );
    expect(await readdir(foreign)).toEqual(['notes.txt']);
    expect((await stat(path.join(foreign, 'notes.txt'))).mode & 0o777).toBe(0o644);
  });

  it('refuses a template entry outside the data directory, and writes nothing', async () => {
    const archive = path.join(scratch, 'escaping.tar.gz');
    await writeFile(archive, archiveOf({ '/PG_VERSION': '18\n', '/../escaped': 'x' }));
    const target = path.join(scratch, 'escape-target');
    await mkdir(target);
    await expect(unpackDataDirTemplate(archive, target)).rejects.toThrow(
      /entry \/\.\.\/escaped is outside the data directory/,
    );
    expect(await readdir(target)).toEqual([]);
    expect(await readdir(scratch)).not.toContain('escaped');
  });

  it('runs PostgreSQL with 16 MB of shared buffers (zeroed at every start), not the 128 MB of initdb', async () => {
    const db = await createPgliteDb({ inMemory: true });
    try {
      const { rows } = await db.query<{ shared_buffers: string }>('SHOW shared_buffers');
      expect(rows[0]?.shared_buffers).toBe('16MB');
    } finally {
      await db.close();
    }
  }, 300_000);
});
