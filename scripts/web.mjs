// Builds the web fleet view's front end into dist/web (make build): web/app.ts bundled by esbuild (already used
// by scripts/bundle.mjs; nothing is downloaded) and web/style.css copied. The server serves both from there.
//   node scripts/web.mjs [outDir]
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Writes app.js and style.css into `outDir` (default dist/web); returns outDir.
 * @param {string} [outDir]
 * @returns {Promise<string>}
 */
export async function buildWebAssets(outDir = join(ROOT, 'dist', 'web')) {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'web', 'app.ts')],
    outfile: join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    target: ['es2022'],
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  await copyFile(join(ROOT, 'web', 'style.css'), join(outDir, 'style.css'));
  return outDir;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildWebAssets(process.argv[2]);
  console.log(`web view assets: ${out}`);
}
