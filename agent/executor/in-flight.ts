/** Counts the commands an executor accepted and has not answered, and wakes those waiting for none. */
export class InFlightCount {
  private count = 0;
  private idleWaiters: (() => void)[] = [];

  get value(): number {
    return this.count;
  }

  add(): void {
    this.count++;
  }

  /** One command answered; at zero, everyone waiting in idle() goes on. */
  remove(): void {
    this.count--;
    if (this.count !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when nothing is in flight (now or later). */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
