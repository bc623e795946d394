/**
 * Host side of the LIO test VM, for the vitest suite (test/lio) and the benchmark (bench/lio.ts): checks the
 * prerequisites, fetches the kernel and builds the initramfs (fetch-deps.sh, build-initramfs.sh), compiles the
 * in-VM code, and boots the VM once with a host script that runs chrooted in the guest (scenario exec).
 * Everything lives in the project: nothing here reads /work/shared.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Project root: this file is test/scsi-vm/launch.ts (or dist/test/scsi-vm/launch.js after `make build`). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  // Walk up to the directory holding package.json and test/scsi-vm/run-vm.sh.
  for (let i = 0; i < 6; i++) {
    if (
      spawnSync('test', [
        '-f',
        join(dir, 'test', 'scsi-vm', 'run-vm.sh'),
        '-a',
        '-f',
        join(dir, 'package.json'),
      ]).status === 0
    ) {
      return dir;
    }
    dir = dirname(dir);
  }
  throw new Error(
    'cannot find the project root (test/scsi-vm/run-vm.sh) above ' + fileURLToPath(import.meta.url),
  );
}

/** Directory of the harness scripts. */
export function scriptsDir(): string {
  return join(projectRoot(), 'test', 'scsi-vm');
}

/** Cache directory for the kernel and the initramfs (PRFLEET_VM_WORK). */
export function vmWorkDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['PRFLEET_VM_WORK'] ?? '/tmp/prfleet-scsi-vm';
}

/** Why the VM cannot run here, or undefined when it can (root, Linux x86_64, qemu or apt to install it). */
export function vmUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `needs Linux x86_64, this is ${process.platform}/${process.arch}`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return 'needs root (apt-get, 9p export of /, SG_IO in the guest)';
  const qemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64 || command -v apt-get'], {
    encoding: 'utf8',
  });
  if (qemu.status !== 0) return 'qemu-system-x86_64 is missing (and no apt-get to install it)';
  return undefined;
}

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ rc: number; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ rc: code ?? (signal ? 128 : 1), output });
    });
  });
}

/** Installs missing packages, unpacks the kernel (cached) and builds the initramfs; throws with the script output. */
export async function prepareVm(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  for (const script of ['fetch-deps.sh', 'build-initramfs.sh']) {
    const r = await run(join(scriptsDir(), script), [], env, 600_000);
    if (r.rc !== 0) throw new Error(`${script} failed (rc ${r.rc}):\n${r.output.slice(-4000)}`);
  }
}

/**
 * Compiles the in-VM TypeScript (test/lio/guest and what it imports) with tsc (incremental) into
 * node_modules/.cache/prfleet-lio-guest, where `make build` (rm -rf dist) cannot pull it away under a running VM
 * and node_modules still resolves from the project; returns the directory.
 */
export async function buildGuestCode(): Promise<string> {
  const root = projectRoot();
  const outDir = guestCodeDir();
  await mkdir(outDir, { recursive: true });
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await run(
    process.execPath,
    [
      tsc,
      '-p',
      join(root, 'test', 'lio', 'tsconfig.guest.json'),
      '--outDir',
      outDir,
      '--tsBuildInfoFile',
      join(outDir, 'tsbuildinfo'),
    ],
    process.env,
    600_000,
  );
  if (r.rc !== 0) throw new Error(`tsc for the in-VM code failed:\n${r.output.slice(-4000)}`);
  return outDir;
}

/**
 * Shell lines that run `command` (a node process) in the background and exit with the status it wrote to
 * $RC_FILE, without waiting for the process itself: a process with an SG_IO ioctl the kernel never completes
 * cannot exit (LIO's PREEMPT AND ABORT hang), and the VM must still power off.
 */
export function detachedNodeScript(command: string): string {
  return [
    'RC_FILE=/tmp/prfleet-vm-rc',
    'rm -f "$RC_FILE"',
    `${command} --rc-file "$RC_FILE" &`,
    'pid=$!',
    'while [ ! -f "$RC_FILE" ] && kill -0 "$pid" 2>/dev/null; do sleep 1; done',
    'if [ -f "$RC_FILE" ]; then exit "$(cat "$RC_FILE")"; fi',
    'wait "$pid"',
  ].join('\n');
}

/**
 * Where buildGuestCode puts the compiled in-VM code: one directory per checkout, because git worktrees share one
 * node_modules (a symlink) and two checkouts' VM runs must not overwrite each other's guest code.
 */
export function guestCodeDir(): string {
  const root = projectRoot();
  const checkout = createHash('sha256').update(root).digest('hex').slice(0, 12);
  return join(root, 'node_modules', '.cache', `prfleet-lio-guest-${checkout}`);
}

/** Options of runInVm. */
export interface RunInVmOptions {
  /** Shell script body run chrooted in the guest (host root, cwd = project root); its exit status is the result. */
  readonly script: string;
  /** Host directory the guest can write (mounted at the same path in the chroot). */
  readonly outDir: string;
  /** Nexuses onto the LU. @default 3 */
  readonly nexuses?: number;
  /** Hard limit for the whole boot. @default 600000 */
  readonly timeoutMs?: number;
  /** Guest RAM, MiB. @default 1024 */
  readonly memMiB?: number;
  /** Called with each console line as it arrives (progress in logs). */
  readonly onLine?: (line: string) => void;
}

/** Result of one VM boot. */
export interface VmRun {
  /** run-vm.sh exit status: the guest script's, or 125 for a boot failure or timeout. */
  readonly rc: number;
  /** The whole console (unprefixed lines). */
  readonly output: string;
  /** Wall time of the boot, ms. */
  readonly wallMs: number;
}

/** Boots the VM once (host root over 9p, outDir read-write) and runs `script` in the chroot. */
export async function runInVm(options: RunInVmOptions): Promise<VmRun> {
  const root = projectRoot();
  await mkdir(options.outDir, { recursive: true });
  const scriptPath = join(resolve(options.outDir), 'in-vm.sh');
  await writeFile(
    scriptPath,
    `#!/bin/sh\n# generated by test/scsi-vm/launch.ts\ncd '${root}' || exit 1\n${options.script}\n`,
  );
  await chmod(scriptPath, 0o755);
  if (/\s/.test(scriptPath))
    throw new Error(`the in-VM script path must not contain spaces: ${scriptPath}`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SHARE: '/',
    OUT: resolve(options.outDir),
    STAMP: '0',
    NEXUSES: String(options.nexuses ?? 3),
    MEM: String(options.memMiB ?? 1024),
    TIMEOUT: String(Math.ceil((options.timeoutMs ?? 600_000) / 1000)),
    // fileio: the conformance harness recreates the LU as fileio (test/lio/guest/lio-configfs.ts).
    EXTRA_APPEND: `testbed.exec=${scriptPath} testbed.backstore=fileio`,
    LOG: join(resolve(options.outDir), 'console.log'),
  };
  await access(join(vmWorkDir(env), 'initramfs.cpio.gz'));
  const started = performance.now();
  const child = spawn(join(scriptsDir(), 'run-vm.sh'), ['exec'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(join(resolve(options.outDir), 'run-vm.out'));
  let output = '';
  let pending = '';
  const onData = (d: Buffer): void => {
    const text = d.toString();
    log.write(text);
    output += text;
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) options.onLine?.(line);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const rc = await new Promise<number>((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolvePromise(code ?? 125));
  });
  log.end();
  return { rc, output, wallMs: Math.round(performance.now() - started) };
}
