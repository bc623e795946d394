import { Semaphore } from '../../src/common/semaphore.js';

/** What the path queues need of a task: whether it still waits, and until when it may start. */
export interface QueuedTask {
  readonly state: 'queued' | 'submitted' | 'done';
  readonly deadline: number;
}

/** What the path queues do with a task whose turn came. */
export interface PathQueueHandlers<T> {
  /** Runs `task`; resolves when its path is free again (which may be after its result). */
  run(task: T): Promise<void>;
  /** Answers `task`, whose deadline passed while it waited for its turn. */
  expire(task: T): void;
}

interface PathQueue<T> {
  readonly tasks: T[];
  running: boolean;
}

/**
 * One FIFO per path, at most `concurrency` paths busy at once: PR commands to one device must not overtake each
 * other, while different devices proceed in parallel. A task that left the 'queued' state while it waited
 * (cancelled) is skipped; one whose deadline passed is expired instead of started.
 */
export class PathQueues<T extends QueuedTask> {
  private readonly queues = new Map<string, PathQueue<T>>();
  private readonly semaphore: Semaphore;

  constructor(
    concurrency: number,
    private readonly handlers: PathQueueHandlers<T>,
  ) {
    this.semaphore = new Semaphore(concurrency);
  }

  /** Paths with a queue now (running or waiting). */
  get size(): number {
    return this.queues.size;
  }

  /** Queues `task` behind the others of `path`, starting the path's queue when it is idle. */
  push(path: string, task: T): void {
    let queue = this.queues.get(path);
    if (!queue) {
      queue = { tasks: [], running: false };
      this.queues.set(path, queue);
    }
    queue.tasks.push(task);
    if (!queue.running) void this.drain(path, queue);
  }

  private async drain(path: string, queue: PathQueue<T>): Promise<void> {
    queue.running = true;
    try {
      for (;;) {
        const task = queue.tasks.shift();
        if (!task) return;
        if (task.state !== 'queued') continue;
        // A free slot is taken at once: no promise to wait for when fewer than `concurrency` paths are busy.
        if (!this.semaphore.tryAcquire()) await this.semaphore.acquire();
        try {
          if (task.state !== 'queued') continue;
          if (Date.now() >= task.deadline) {
            this.handlers.expire(task);
            continue;
          }
          await this.handlers.run(task);
        } finally {
          this.semaphore.release();
        }
      }
    } finally {
      queue.running = false;
      if (queue.tasks.length === 0) this.queues.delete(path);
    }
  }
}
