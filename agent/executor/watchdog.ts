/**
 * One watched command: when it is due (performance.now() ms: monotonic, so a step of the wall clock expires no
 * command early or late, as the per-command timers could not) and what to do if it is still watched then.
 */
interface Watched {
  readonly dueAt: number;
  readonly expire: () => void;
}

/**
 * One timer for every command an executor has submitted to a device, armed for the earliest one due. A command
 * that answers only leaves a set; the timer is moved only when a command is due earlier than the timer (commands
 * share a timeout, so with one in flight at a time it stays where it is) and checked when it fires. A timer per
 * command cost a setTimeout and a clearTimeout each (~1 µs, bench/README.md "Issue 15.5, fourth pass"). The timer
 * is unref'd (a ref()/unref() per command cost a third of that again): it never has to hold the process open, as
 * a command in flight is held by its device (SG_IO's ioctl runs on libuv's thread pool) and the agent by its link.
 */
export class Watchdog {
  private readonly watched = new Set<Watched>();
  private timer: NodeJS.Timeout | undefined;
  private timerDueAt = Infinity;

  /** Commands watched now. */
  get size(): number {
    return this.watched.size;
  }

  /** Calls `expire` in `ms` unless {@link unwatch} is called with the returned handle first. */
  watch(ms: number, expire: () => void): object {
    const entry: Watched = { dueAt: performance.now() + ms, expire };
    this.watched.add(entry);
    if (entry.dueAt < this.timerDueAt) this.arm(entry.dueAt);
    return entry;
  }

  /** Stops watching (the command answered); a no-op for a handle already expired. */
  unwatch(handle: object): void {
    this.watched.delete(handle as Watched);
  }

  private arm(dueAt: number): void {
    clearTimeout(this.timer);
    this.timerDueAt = dueAt;
    this.timer = setTimeout(this.fire, Math.max(1, dueAt - performance.now())).unref();
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.timerDueAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const entry of [...this.watched]) {
      if (entry.dueAt <= now) {
        this.watched.delete(entry);
        entry.expire();
      } else if (entry.dueAt < next) {
        next = entry.dueAt;
      }
    }
    // Entries added by expire() armed the timer themselves when due earlier.
    if (next < this.timerDueAt) this.arm(next);
  };
}
