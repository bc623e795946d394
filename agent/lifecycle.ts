import type { Logger } from 'pino';
import type { AgentState } from './agent.js';

/** An agent's lifecycle state and those who watch it. */
export class AgentLifecycle {
  private current: AgentState = 'connecting';
  private readonly listeners = new Set<(state: AgentState) => void>();

  constructor(
    private readonly agentId: string,
    private readonly log: Logger,
  ) {}

  get state(): AgentState {
    return this.current;
  }

  /** Moves to `next` and tells every listener (nothing when already there). */
  set(next: AgentState): void {
    if (this.current === next) return;
    this.current = next;
    this.log.info({ state: next }, 'agent state');
    for (const l of [...this.listeners]) l(next);
  }

  /** Calls `listener` on every change; returns an unsubscribe function. */
  onChange(listener: (state: AgentState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves when the state is `target` (now or later); rejects if it stops first or `signal` aborts. */
  waitFor(target: AgentState, signal?: AbortSignal): Promise<void> {
    if (this.current === target) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        cleanup();
        reject(
          signal?.reason instanceof Error
            ? signal.reason
            : new Error(`agent ${this.agentId}: wait aborted`),
        );
      };
      const unsubscribe = this.onChange((s) => {
        if (s === target) {
          cleanup();
          resolve();
        } else if (s === 'stopped') {
          cleanup();
          reject(new Error(`agent ${this.agentId} stopped before reaching ${target}`));
        }
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
