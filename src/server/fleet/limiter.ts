/** A counting semaphore: at most `limit` holders at once, waiters served in arrival order. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];

  constructor(
    /** Holders allowed at once (at least 1). */
    readonly limit: number,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`invalid semaphore limit: ${limit}`);
  }

  /** Waits for a slot; rejects with the signal's reason if `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.active < this.limit) {
      this.active += 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Frees a slot (hands it straight to the next waiter). */
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active -= 1;
  }
}

/**
 * Bounds commands in flight overall and per agent, so an audit of thousands of LUs neither floods one agent's
 * queue (AGENT_BUSY) nor the server. Slots are taken agent first, then overall, and released in reverse: every
 * holder takes them in one order, so no two callers can wait on each other.
 */
export class CommandLimiter {
  private readonly overall: Semaphore;
  private readonly perAgent = new Map<string, Semaphore>();

  constructor(
    overall: number,
    /** Commands in flight per agent. */
    private readonly perAgentLimit: number,
  ) {
    this.overall = new Semaphore(overall);
    if (!Number.isInteger(perAgentLimit) || perAgentLimit < 1) {
      throw new RangeError(`invalid per-agent limit: ${perAgentLimit}`);
    }
  }

  /** Runs `fn` holding one slot of `agentId` and one overall slot. */
  async run<T>(agentId: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let agent = this.perAgent.get(agentId);
    if (agent === undefined) this.perAgent.set(agentId, (agent = new Semaphore(this.perAgentLimit)));
    await agent.acquire(signal);
    try {
      await this.overall.acquire(signal);
      try {
        return await fn();
      } finally {
        this.overall.release();
      }
    } finally {
      agent.release();
    }
  }
}
