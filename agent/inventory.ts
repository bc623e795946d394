import type { Logger } from 'pino';
import type { Path } from '../src/gen/prfleet/v1/scsi.js';
import { discoverPath, offlinePath, type DiscoveryTarget } from './discovery.js';
import type { DeviceSource } from './agent.js';

/** The paths an agent reports, and which of them are offline now (a path fails, then answers again). */
export class PathInventory {
  private paths: Path[] = [];
  /** Paths marked offline now: every answer checks it, so the common case (none) costs nothing per command. */
  private offline = 0;

  /** The paths as last discovered, with their online marks. */
  get current(): Path[] {
    return this.paths;
  }

  replace(next: Path[]): void {
    this.paths = next;
    this.offline = next.reduce((n, p) => (p.online ? n : n + 1), 0);
  }

  /** Marks `path` offline; true when that changed the inventory (it was online). */
  markOffline(path: string): boolean {
    const index = this.paths.findIndex((p) => p.path === path && p.online);
    if (index < 0) return false;
    this.replace(this.paths.map((p, i) => (i === index ? { ...p, online: false } : p)));
    return true;
  }

  /** Marks `path` online again; true when that changed the inventory (it was offline). */
  markOnline(path: string): boolean {
    if (this.offline === 0) return false;
    const offline = this.paths.find((p) => p.path === path && !p.online);
    if (!offline) return false;
    this.replace(this.paths.map((p) => (p === offline ? { ...p, online: true } : p)));
    return true;
  }
}

/**
 * Describes every device node the source lists and `allowed` accepts (INQUIRY, VPD, PR capabilities), at most
 * `concurrency` at once; a node that cannot be opened or described is reported offline, not dropped.
 */
export async function discoverPaths(
  source: DeviceSource,
  allowed: (path: string) => boolean,
  concurrency: number,
  log: Logger,
): Promise<Path[]> {
  const targets = (await source.listTargets()).filter((t) => allowed(t.path));
  const found: Path[] = new Array<Path>(targets.length);
  const describe = async (index: number): Promise<void> => {
    const target = targets[index] as DiscoveryTarget;
    try {
      const device = await source.transport.open(target.path, { readOnly: true });
      try {
        found[index] = await discoverPath(device, target, { log });
      } finally {
        await device.close();
      }
    } catch (e) {
      log.warn({ path: target.path, err: e }, 'path not discovered; reported offline');
      found[index] = offlinePath(target);
    }
  };
  let next = 0;
  const workers = Array.from({ length: Math.min(targets.length, concurrency) }, async () => {
    while (next < targets.length) await describe(next++);
  });
  await Promise.all(workers);
  return found;
}
