// `make agent-dist`: a self-contained prfleet-agent directory a host installs without npm (and without a Node of
// its own): the agent bundled with esbuild (scripts/bundle.mjs), koffi with this platform's native module (the
// SG_IO transport calls ioctl(2) through it), the pinned Node runtime the project builds and tests on, the
// systemd unit, the environment file template and docs/deployment.md. Copy the directory to /opt/prfleet-agent (docs/deployment.md).
//   node scripts/agent-dist.mjs [--out <dir>]     (default dist/agent-dist/prfleet-agent; run after tsc)
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bundle } from './bundle.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** koffi's JavaScript and the prebuilt native module npm installed for this platform. */
const KOFFI = ['koffi', `@koromix/koffi-${process.platform}-${process.arch}`];

/**
 * Builds the directory; returns its path.
 * @param {string} [out]
 */
export async function buildAgentDist(out = join(ROOT, 'dist', 'agent-dist', 'prfleet-agent')) {
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await bundle('agent', join(out, 'lib'));
  for (const name of KOFFI) {
    await cp(join(ROOT, 'node_modules', name), join(out, 'lib', 'node_modules', name), {
      recursive: true,
      dereference: true,
    });
  }
  // The runtime this script runs on is the pinned one when started through the Makefile.
  await cp(process.execPath, join(out, 'node'));
  await cp(join(ROOT, 'deploy', 'prfleet-agent.service'), join(out, 'prfleet-agent.service'));
  await cp(join(ROOT, 'deploy', 'agent.env.example'), join(out, 'agent.env.example'));
  await cp(join(ROOT, 'docs', 'deployment.md'), join(out, 'deployment.md'));
  const manifest = await readFile(join(ROOT, 'package.json'), 'utf8');
  const version = /"version":\s*"([^"]+)"/.exec(manifest)?.[1] ?? 'unknown';
  await writeFile(
    join(out, 'VERSION'),
    `prfleet-agent ${version}, node ${process.version} ${process.platform}-${process.arch}\n`,
  );
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  console.log(`agent-dist: ${await buildAgentDist(values.out)}`);
}
