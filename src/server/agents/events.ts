import type { Logger } from 'pino';
import type { Path } from '../../gen/prfleet/v1/scsi.js';
import type { AgentSession } from './link.js';

/** What happened to a session, for listeners (shared inventory, presence, metrics). */
export type RegistryEvent =
  | { readonly kind: 'opened'; readonly session: AgentSession }
  | { readonly kind: 'inventory'; readonly session: AgentSession; readonly paths: readonly Path[] }
  | { readonly kind: 'heartbeat'; readonly session: AgentSession }
  /** `current`: it was the agent's current session (false when a newer one had replaced it already). */
  | { readonly kind: 'closed'; readonly session: AgentSession; readonly current: boolean };

/**
 * The registry's listeners. A listener that throws is logged and skipped: one broken observer (metrics, say)
 * must not stop the shared inventory or presence from hearing of a session.
 */
export class RegistryEvents {
  private readonly listeners = new Set<(event: RegistryEvent) => void>();

  constructor(private readonly log: Logger) {}

  /** Calls `listener` on every session event; returns an unsubscribe function. */
  on(listener: (event: RegistryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: RegistryEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log.error({ err, event: event.kind }, 'registry listener failed');
      }
    }
  }
}
