import type { ScsiDevice, ScsiTransport } from '../transport/transport.js';
import { abortOf, type Task } from './task.js';

/**
 * The executor's open devices, one per path, opened on first use and kept open: a PR command should not pay an
 * open() each time. A failed open is not kept, so the next command on the path tries again.
 */
export class DeviceCache {
  private readonly devices = new Map<string, Promise<ScsiDevice>>();

  constructor(private readonly transport: ScsiTransport) {}

  /** The open device of `path`; an open started here is cancelled when `task` is cancelled while queued. */
  open(path: string, task: Pick<Task, 'abort'>): Promise<ScsiDevice> {
    const cached = this.devices.get(path);
    if (cached) return cached;
    const opened = this.transport.open(path, { signal: abortOf(task).signal });
    this.devices.set(path, opened);
    opened.catch(() => {
      if (this.devices.get(path) === opened) this.devices.delete(path);
    });
    return opened;
  }

  /** Forgets the device of `path` and closes it (after an OS error: the next command reopens the node). */
  async drop(path: string): Promise<void> {
    const opened = this.devices.get(path);
    this.devices.delete(path);
    if (opened) await opened.then((d) => d.close()).catch(() => undefined);
  }

  /** Closes every open device. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.devices.keys()].map((p) => this.drop(p)));
  }
}
