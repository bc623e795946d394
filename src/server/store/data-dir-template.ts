/**
 * Unpacking the initialised PGlite data directory scripts/bundle.mjs ships (PGlite's own dump: a gzipped ustar
 * archive of directories and regular files) with Node's zlib and file system, not through PGlite's `loadDataDir`:
 * that writes every file through the WebAssembly file system, three quarters of a first open (bench/README.md,
 * "Issue 15.2, session 9"). The archive is ours, made at build time; a dozen lines of ustar reading spare a
 * dependency, and anything but a directory or a regular file inside the directory is refused.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

const gunzipAsync = promisify(gunzip);

/** Written last: PostgreSQL's mark of a data directory, so a directory without it was not fully unpacked. */
export const PG_VERSION = 'PG_VERSION';
/**
 * Written first and removed after PG_VERSION: a directory holding it was being unpacked by a start that was cut
 * off, so the next start may unpack over it; any other non-empty directory without PG_VERSION is not ours.
 */
export const UNPACKING = '.prfleet-unpacking';

interface TarEntry {
  readonly name: string;
  readonly kind: 'directory' | 'file';
  readonly data: Buffer;
}

/** The entries of an uncompressed ustar archive; throws for anything else. */
function* tarEntries(tar: Buffer, archive: string): Generator<TarEntry> {
  const text = (header: Buffer, start: number, length: number): string =>
    header.toString('utf8', start, start + length).replace(/\0[\s\S]*$/, '');
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    if (header.every((byte) => byte === 0)) return; // the archive's end
    if (text(header, 257, 5) !== 'ustar') throw new Error(`${archive} is not a ustar archive`);
    const name = [text(header, 345, 155), text(header, 0, 100)].filter((p) => p !== '').join('/');
    const size = Number.parseInt(text(header, 124, 12).trim() || '0', 8);
    const type = text(header, 156, 1);
    at += 512;
    const data = tar.subarray(at, at + size);
    at += Math.ceil(size / 512) * 512;
    if (type === '5') yield { name, kind: 'directory', data };
    else if (type === '0' || type === '') yield { name, kind: 'file', data };
    else throw new Error(`${archive}: entry ${name} is neither a directory nor a regular file`);
  }
}

/**
 * Unpacks `archive` into `dataDir` (which exists, owner-only), files 0600 and directories 0700. Every entry is
 * checked before anything is written. PG_VERSION comes last (and UNPACKING first), so a start cut off halfway
 * leaves a directory the next start recognises and unpacks again over what is there. The thousand files are written at once
 * (libuv's thread pool): creating files one by one was up to 1 s on this machine's loaded disk, in parallel a third.
 */
export async function unpackDataDirTemplate(archive: string, dataDir: string): Promise<void> {
  const root = path.resolve(dataDir);
  const entries = [...tarEntries(await gunzipAsync(await readFile(archive)), archive)].map(
    (entry) => {
      const target = path.resolve(root, `.${path.posix.sep}${entry.name}`);
      const relative = path.relative(root, target);
      if (relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative))
        throw new Error(`${archive}: entry ${entry.name} is outside the data directory`);
      return { ...entry, target, relative };
    },
  );
  const version = entries.find((e) => e.kind === 'file' && e.relative === PG_VERSION);
  if (version === undefined) throw new Error(`${archive} holds no ${PG_VERSION}`);
  const files = entries.filter((e) => e.kind === 'file' && e !== version);
  const directories = new Set([
    ...entries.filter((e) => e.kind === 'directory').map((e) => e.target),
    ...files.map((e) => path.dirname(e.target)),
  ]);
  await writeFile(path.join(root, UNPACKING), '', { mode: 0o600 });
  for (const directory of directories) await mkdir(directory, { recursive: true, mode: 0o700 });
  await Promise.all(files.map((e) => writeFile(e.target, e.data, { mode: 0o600 })));
  await writeFile(version.target, version.data, { mode: 0o600 });
  await rm(path.join(root, UNPACKING), { force: true });
}
