/**
 * Tasks run one after another per key, in the order they were given (different keys run concurrently): one
 * agent's inventory writes, one agent's events, one LU's reads. A failed task does not stop the ones after it.
 */
export class KeyedTurns {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `task` after every task given for `key` before it; resolves or rejects with its own outcome. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(task);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.finally(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** Resolves once every task given so far (and any given meanwhile) has finished. */
  async flushed(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}
