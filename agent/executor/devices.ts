import type { ScsiDevice, ScsiTransport } from '../transport/transport.js';
import { abortOf, type Task } from './task.js';

/**
 * The executor's open devices, one per path, opened on first use and kept open: a PR command should not pay an
 * open() each time. A failed open is not kept, so the next command on the path tries again.
 */
export class DeviceCache {
  /** Opens started (or done), by path. */
  private readonly opening = new Map<string, Promise<ScsiDevice>>();
  /** Opens that succeeded, by path: a command on an open path takes its device without a promise. */
  private readonly open_ = new Map<string, ScsiDevice>();

  constructor(private readonly transport: ScsiTransport) {}

  /** The device of `path` when its open has succeeded (and it was not dropped since), else undefined. */
  opened(path: string): ScsiDevice | undefined {
    return this.open_.get(path);
  }

  /** The open device of `path`; an open started here is cancelled when `task` is cancelled while queued. */
  open(path: string, task: Pick<Task, 'abort'>): Promise<ScsiDevice> {
    const cached = this.opening.get(path);
    if (cached) return cached;
    const opened = this.transport.open(path, { signal: abortOf(task).signal });
    this.opening.set(path, opened);
    opened.then(
      (device) => {
        if (this.opening.get(path) === opened) this.open_.set(path, device);
      },
      () => {
        if (this.opening.get(path) === opened) this.opening.delete(path);
      },
    );
    return opened;
  }

  /** Forgets the device of `path` and closes it (after an OS error: the next command reopens the node). */
  async drop(path: string): Promise<void> {
    const opened = this.opening.get(path);
    this.opening.delete(path);
    this.open_.delete(path);
    if (opened) await opened.then((d) => d.close()).catch(() => undefined);
  }

  /** Closes every open device. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.opening.keys()].map((p) => this.drop(p)));
  }
}
