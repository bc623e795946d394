import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits `ms`, or less when `signal` aborts: it resolves then, never rejects, so callers that must stop check
 * `signal.aborted` themselves (a retry loop does anyway). The one pause of the server, the agent and the CLI.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return sleep(ms, undefined, signal === undefined ? {} : { signal }).catch(() => undefined);
}
