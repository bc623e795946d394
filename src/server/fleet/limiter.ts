import { Semaphore } from '../../common/semaphore.js';

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
    if (agent === undefined)
      this.perAgent.set(agentId, (agent = new Semaphore(this.perAgentLimit)));
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
